"""The real processes tests start: a private redis-server they may stop and kill, Celery workers and
drivers (tests/chaos_driver.py), and what those processes need to reach the test database."""

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import redis
from django.db import connection

from tests.polling import eventually

ROOT = Path(__file__).resolve().parent.parent


def database_url() -> str:
    """The test database as a DATABASE_URL another process can open: it must see the test's rows
    (transactional tests commit; the SQLite test database is a file, see themoon/settings_test.py)."""
    db = connection.settings_dict
    if connection.vendor == "postgresql":
        auth = quote(db["USER"] or "") + (":" + quote(db["PASSWORD"]) if db["PASSWORD"] else "")
        return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
    if connection.is_in_memory_db():
        raise RuntimeError("the test database is in-memory SQLite: another process cannot open it")
    return f"sqlite:///{db['NAME']}"


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PrivateRedis:
    """A redis-server of our own on a free port, which a test may stop, kill and restart at will.

    By default without persistence: a restarted server starts empty, as after losing a cache node.
    `aof=True` runs it with `appendonly yes` + `appendfsync everysec` in a directory of its own, so a
    restart after kill -9 reloads the AOF (losing at most the last second of writes). `maxmemory`
    (e.g. "8mb") with `policy` (e.g. "allkeys-lru") makes it evict under memory pressure.
    """

    def __init__(
        self,
        port: int,
        workdir: Path,
        *,
        aof: bool = False,
        maxmemory: str | None = None,
        policy: str = "noeviction",
        extra: tuple[str, ...] = (),
    ) -> None:
        self.port, self.aof, self.maxmemory, self.policy = port, aof, maxmemory, policy
        self.extra = extra  # more redis-server options, e.g. ("--rename-command", "CONFIG", '""')
        self.workdir = workdir / f"redis-{port}" if aof else workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        persistence = (
            ["--appendonly", "yes", "--appendfsync", "everysec"] if self.aof else ["--appendonly", "no"]
        )
        memory = ["--maxmemory", self.maxmemory, "--maxmemory-policy", self.policy] if self.maxmemory else []
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                *persistence,
                *memory,
                "--dir",
                str(self.workdir),
                *self.extra,
            ],
            stdout=subprocess.DEVNULL,
        )
        # A server loading a big AOF answers LOADING for a while: wait until it serves.
        eventually(self._answers, timeout=60, interval=0.05)

    def _answers(self) -> bool:
        try:
            return redis.Redis(port=self.port, socket_connect_timeout=0.2).ping()
        except redis.RedisError:  # BusyLoadingError (loading the AOF) included
            return False

    def restart(self) -> None:
        self.stop()
        time.sleep(1.0)  # a real outage: writers fall back to the outbox meanwhile
        self.start()

    def stop(self) -> None:
        """kill -9: the server vanishes mid-command, its clients see reset connections."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def shutdown(self) -> None:
        """SHUTDOWN NOSAVE (what SIGTERM does): the server closes its clients' connections, then exits."""
        if self.process and self.process.poll() is None:
            # redis-py reports the connection the server closed on its way out.
            with contextlib.suppress(redis.ConnectionError):
                self.client().shutdown(nosave=True)
            self.process.wait(timeout=10)

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_connect_timeout=1, socket_timeout=5)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"


class Processes:
    """Python subprocesses sharing one environment, each logging to `<logs>/<name>.log`."""

    def __init__(self, env: dict, logs: Path) -> None:
        self.env, self.logs = env, logs
        self.running: dict[str, subprocess.Popen] = {}

    def start(self, name: str, *args: str) -> subprocess.Popen:
        log = (self.logs / f"{name}.log").open("w")
        process = subprocess.Popen(
            [sys.executable, *args], cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, text=True
        )
        self.running[name] = process
        return process

    def worker(self, name: str, *options: str, host: str = "chaos") -> subprocess.Popen:
        """`celery -A themoon worker` as the Procfile runs it (without gossip and mingle), solo pool
        unless `options` say otherwise, node `name@host`."""
        pool = () if any(o.startswith(("--pool", "--concurrency")) for o in options) else ("--pool", "solo")
        return self.start(
            name,
            "-m",
            "celery",
            "-A",
            "themoon",
            "worker",
            "--without-gossip",
            "--without-mingle",
            *pool,
            "-n",
            f"{name}@{host}",
            "--loglevel",
            "INFO",
            *options,
        )

    def freeze(self, name: str) -> None:
        """SIGSTOP: the process keeps its sockets and state but runs nothing (a stalled VM, a GC
        pause, a laptop lid): what it holds looks abandoned to everyone else."""
        self.running[name].send_signal(signal.SIGSTOP)

    def resume(self, name: str) -> None:
        self.running[name].send_signal(signal.SIGCONT)

    def stop(self, name: str, timeout: float = 30) -> None:
        """SIGTERM one process (a warm shutdown for Celery) and wait for it."""
        process = self.running[name]
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)

    def log(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text()

    def stop_all(self) -> None:
        for process in self.running.values():
            if process.poll() is None:
                process.send_signal(signal.SIGCONT)  # a frozen process cannot act on SIGTERM
                process.send_signal(signal.SIGTERM)
        for process in self.running.values():
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()


@contextlib.contextmanager
def uvicorn_server(log: Path | None = None, **env: str) -> Iterator[int]:
    """uvicorn serving themoon.asgi on a free loopback port, as the Procfile's web process does
    (websockets-sansio, no lifespan), against the test's database and Redis, `env` on top; yields
    the port once it listens, always stopped. Its output goes to `log` when given (kept)."""
    from django.conf import settings

    port = free_port()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "themoon.settings_test",
        "REDIS_URL": settings.REDIS_URL,
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
        "DATABASE_URL": database_url(),
        "DATABASE_CONN_MAX_AGE": "0",
        "WEBSOCKET_ALLOWED_ORIGINS": f"http://127.0.0.1:{port}",
        **env,
    }
    command = [sys.executable, "-m", "uvicorn", "themoon.asgi:application", "--host", "127.0.0.1"]
    command += [
        "--port",
        str(port),
        "--ws",
        "websockets-sansio",
        "--lifespan",
        "off",
        "--log-level",
        "warning",
    ]
    with log.open("w+b") if log is not None else tempfile.TemporaryFile() as output:
        server = subprocess.Popen(command, cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT)

        def tail() -> str:
            output.seek(0)
            return output.read()[-3000:].decode(errors="replace")

        def listening() -> bool:
            assert server.poll() is None, f"uvicorn exited: {tail()}"
            with socket.socket() as probe:
                return probe.connect_ex(("127.0.0.1", port)) == 0

        try:
            eventually(listening, timeout=20, interval=0.1)
            yield port
        finally:
            server.terminate()
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait(timeout=5)
