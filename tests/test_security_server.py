"""Safe by default as started: the settings' debug default, the refusal to start with debug where
others can reach it, and the body limit of the web process the Procfile starts (real uvicorn)."""

import os
import re
import shlex
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings

from tests.polling import eventually
from tests.subprocesses import free_port

ROOT = Path(__file__).resolve().parent.parent


def clean_env(**overrides: str) -> dict[str, str]:
    """The environment of a process started the way the Procfile starts it: no DJANGO_DEBUG."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "WEBSOCKET_", "UVICORN_"))}
    env.update(
        DJANGO_SETTINGS_MODULE="themoon.settings",
        DJANGO_SECRET_KEY="a-real-secret-for-this-test-0123456789",
        REDIS_URL=settings.REDIS_URL,
        CELERY_BROKER_URL=settings.CELERY_BROKER_URL,
    )
    env.update(overrides)
    return env


def load_settings(env: dict[str, str]) -> subprocess.CompletedProcess:
    code = "from django.conf import settings; print(settings.DEBUG, settings.WEBSOCKET_ALLOWED_ORIGINS)"
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )


def test_debug_is_off_unless_asked_for():
    loaded = load_settings(clean_env())
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.startswith("False ")


def test_websocket_origins_default_to_full_origins_of_the_allowed_hosts():
    loaded = load_settings(clean_env(DJANGO_ALLOWED_HOSTS="example.com,localhost", PORT="9000"))
    assert loaded.returncode == 0, loaded.stderr
    assert "['https://example.com', 'http://localhost:9000']" in loaded.stdout


@pytest.mark.parametrize("hosts", ["example.com", "localhost,*", "10.0.0.7"])
def test_debug_with_a_non_local_allowed_host_refuses_to_load(hosts):
    loaded = load_settings(clean_env(DJANGO_DEBUG="true", DJANGO_ALLOWED_HOSTS=hosts))
    assert loaded.returncode != 0
    assert "ImproperlyConfigured" in loaded.stderr
    assert "DJANGO_ALLOWED_HOSTS" in loaded.stderr


def test_debug_with_local_hosts_loads():
    loaded = load_settings(clean_env(DJANGO_DEBUG="true"))
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.startswith("True ")


def procfile_web_command(port: int) -> list[str]:
    """The Procfile's web command, on loopback and one worker, with its ${VAR:-default}s filled in."""
    line = next(x for x in (ROOT / "Procfile").read_text().splitlines() if x.startswith("web:"))
    line = re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", line.removeprefix("web:"))
    words = [w for w in shlex.split(line) if "=" not in w or w.startswith("--")]
    assert words[0] == "uvicorn"
    options = {"--host": "127.0.0.1", "--port": str(port), "--workers": "1"}
    for i, word in enumerate(words):
        if word in options:
            words[i + 1] = options[word]
    return [sys.executable, "-m", *words]


def start(command: list[str], env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def stop(server: subprocess.Popen) -> str:
    if server.poll() is None:
        server.terminate()
    try:
        output, _ = server.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        server.kill()
        output, _ = server.communicate(timeout=5)
    return output.decode(errors="replace")


def listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def test_debug_on_a_public_bind_refuses_to_start():
    port = free_port()
    command = procfile_web_command(port)
    command[command.index("--host") + 1] = "0.0.0.0"
    server = start(command, clean_env(DJANGO_DEBUG="true"))
    try:
        server.wait(timeout=60)
    finally:
        output = stop(server)
    assert server.returncode != 0
    assert "binds 0.0.0.0" in output
    assert not listening(port)


@pytest.fixture(scope="module")
def web():
    """The Procfile's web process (debug off, as the Procfile leaves it), on a loopback port."""
    port = free_port()
    server = start(procfile_web_command(port), clean_env(REQUEST_BODY_MAX_BYTES="100000"))

    def up() -> bool:
        assert server.poll() is None, stop(server)
        return listening(port)

    try:
        eventually(up, timeout=30, interval=0.1)
        yield port
    finally:
        stop(server)


def exchange(port: int, head: str, chunks=(), timeout: float = 10) -> bytes:
    """Send a raw request head (and body chunks), return what the server answers before closing."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as conn:
        conn.sendall(head.replace("\n", "\r\n").encode() + b"\r\n")
        try:
            for chunk in chunks:
                conn.sendall(chunk)
        except OSError:
            pass  # the server stopped reading and closed: what we are here to see
        answer = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                data = conn.recv(65536)
            except ConnectionResetError:
                break
            if not data:
                break
            answer += data
            if b"\r\n\r\n" in answer and answer.endswith(b"}"):
                break
        return answer


def test_a_200_mb_content_length_gets_413_before_the_body_is_sent(web):
    started = time.monotonic()
    answer = exchange(
        web,
        "POST /api/posts HTTP/1.1\nHost: 127.0.0.1\nContent-Type: application/json\n"
        f"Content-Length: {200 * 1024 * 1024}\n",
        chunks=[b"{"],
    )
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b'"detail"' in answer
    assert b"100000" in answer
    assert time.monotonic() - started < 5


def test_a_chunked_body_over_the_limit_gets_413_and_is_not_read_on(web):
    chunk = b"x" * 40_000
    framed = b"%x\r\n%s\r\n" % (len(chunk), chunk)
    answer = exchange(
        web,
        "POST /api/posts HTTP/1.1\nHost: 127.0.0.1\nContent-Type: application/json\n"
        "Transfer-Encoding: chunked\n",
        chunks=[framed] * 5,
    )
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]


def test_a_foreign_host_gets_a_json_400_from_the_procfile_server(web):
    answer = exchange(web, "GET /api/nowhere HTTP/1.1\nHost: attacker.example\nConnection: close\n")
    assert answer.startswith(b"HTTP/1.1 400"), answer[:200]
    assert b"application/json" in answer
    assert b"REDIS_URL" not in answer
    assert b"Traceback" not in answer
