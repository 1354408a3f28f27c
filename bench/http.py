"""HTTP benchmark: the hot API through the web servers, against baselines on the same server.

    python -m bench.http [--seconds 5] [--rounds 2] [--connections 16] [--candidates deployed,split,...]

Needs `wrk` (Debian/Ubuntu: `apt-get install wrk`; macOS: `brew install wrk`). Starts each
candidate web server (one process, loopback, a free port) on the harness's throwaway databases,
warms the caches, then runs `wrk -t2 -c16` for --seconds per row, the rows taking turns for
--rounds rounds (req/s and latency: the best round; the ratio to the bare view: the median of
the per-round ratios, each round running a candidate's rows back to back, so a slow spell of a
noisy machine hits both sides of a ratio alike):
- `GET /api/feed` and `GET /api/posts/{id}` hot (warm cache, bearer token);
- a bare Django view returning the same cached feed bytes, on the same server (the baseline);
- a plain ASGI callable (no Django) reading the same bytes through redis.asyncio.
Candidates: `deployed` (uvicorn on themoon.asgi as the Procfile runs it: HTTP on Django's WSGI
handler on a thread pool through themoon/wsgi_bridge.py, WebSockets on Channels), `split`
(themoon/router.py on one port in front of gunicorn for HTTP and uvicorn for /ws/), `wsgi`
(gunicorn gthread, the split-tier alternative), `granian` (granian's WSGI mode, HTTP only),
`asgi` (uvicorn on Django's ASGI handler, as HTTP was served before), `async` (Django's ASGI
handler, async-capable middleware only, an async feed view on redis.asyncio: the prototype of a
fully async path). Each figure comes with the load average.
Bounded: rows x rounds x --seconds of load plus start-up; loopback only.
"""

import argparse
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.request import Request, urlopen

from bench.harness import bench_database, database_url, environment, table

ROOT = Path(__file__).resolve().parent.parent
ARGS = argparse.Namespace(
    seconds=5.0, rounds=2, connections=16, candidates="deployed,split,wsgi,granian,asgi,async"
)
KEY = "bench:http:feed"
UVICORN = ["-m", "uvicorn", "--host", "127.0.0.1", "--loop", "uvloop", "--http", "httptools"]
UVICORN += ["--ws", "websockets-sansio", "--lifespan", "off", "--workers", "1", "--log-level", "warning"]
UVICORN += ["--timeout-keep-alive", "5", "--no-access-log"]
ASGI_APP = "themoon.asgi:application"


def gunicorn_command(port: int) -> list[str]:
    """gunicorn gthread as themoon/gunicorn.conf.py configures it (the split tier), one worker, loopback."""
    config = ["-c", "themoon/gunicorn.conf.py", "--workers", "1", "--log-level", "warning"]
    return ["-m", "gunicorn", *config, "--bind", f"127.0.0.1:{port}"]


def granian_command(port: int) -> list[str]:
    """granian's WSGI mode (HTTP parsed in Rust, the app on its blocking threads), one worker."""
    threads = ["--blocking-threads", os.environ.get("WEB_THREADS", "8")]
    options = ["--interface", "wsgi", "--workers", "1", *threads, "--no-ws", "--log-level", "warning"]
    return ["-m", "granian", *options, "--host", "127.0.0.1", "--port", str(port), "themoon.wsgi:application"]


CANDIDATES = {
    # name: (command for a port, extra environment, paths served: the product's feed path)
    "wsgi": (gunicorn_command, {}, "/api/feed"),
    "granian": (granian_command, {}, "/api/feed"),
    "deployed": (lambda port: [*UVICORN, ASGI_APP, "--port", str(port)], {}, "/api/feed"),
    # gunicorn for HTTP and uvicorn for /ws/ behind themoon/router.py on one port (started apart)
    "split": (None, {}, "/api/feed"),
    "asgi": (
        lambda port: [*UVICORN, "bench.http_asgi:application", "--port", str(port)],
        {},
        "/api/feed",
    ),
    "async": (
        lambda port: [*UVICORN, "bench.http_asgi:application", "--port", str(port)],
        {"BENCH_ASYNC_MIDDLEWARE": "1"},
        "/bench/feed-async",
    ),
}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Server:
    """One web server process on a free loopback port, terminated on exit."""

    def __init__(self, command, env: dict[str, str]) -> None:
        """`command(port)`: the server's arguments after `python`."""
        self.port = _free_port()
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 (closed in stop())
        self.process = subprocess.Popen(
            [sys.executable, *command(self.port)],
            cwd=ROOT,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def wait_listening(self) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited during start-up:\n{self.tail()}")
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.1)
        raise RuntimeError("server did not listen within 60 s")

    def tail(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")[-3000:]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)
        self.log.close()


def _fetch(port: int, path: str, token: str | None) -> bytes:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with urlopen(Request(f"http://127.0.0.1:{port}{path}", headers=headers), timeout=30) as answer:
        assert answer.status == 200, (path, answer.status)
        return answer.read()


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def _ms(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()
    return float(number) * _UNITS[unit]


def wrk(port: int, path: str, token: str | None, seconds: float, connections: int) -> dict[str, float]:
    """req/s, p50 and p99 (ms) and the 1-minute load average of one bounded wrk run."""
    command = ["wrk", "-t2", f"-c{connections}", f"-d{seconds:.0f}s", "--latency", "--timeout", "5s"]
    if token:
        command += ["-H", f"Authorization: Bearer {token}"]
    out = subprocess.run(
        [*command, f"http://127.0.0.1:{port}{path}"], capture_output=True, text=True, timeout=seconds + 60
    ).stdout
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors or "Socket errors" in out:
        raise RuntimeError(f"wrk saw errors on {path}:\n{out}")
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "p50": _ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1)),
        "p99": _ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1)),
        "load": os.getloadavg()[0],
    }


def _seed() -> tuple[str, int]:
    """A viewer following 20 authors with 3 posts each: (the viewer's token, a post id)."""
    from accounts.auth import issue_token
    from accounts.models import AppUser
    from feed.models import Follow, Post

    viewer = AppUser.objects.create(username="http-bench-viewer", password="!")
    authors = AppUser.objects.bulk_create(
        [AppUser(username=f"http-bench-{i}", password="!") for i in range(20)]
    )
    Follow.objects.bulk_create([Follow(follower=viewer, followee=author) for author in authors])
    for author in authors:
        for n in range(3):
            post = Post.objects.create(author=author, body=f"post {n} by {author.username} " + "x" * 200)
    return issue_token(viewer), post.pk


def _rows(candidates: list[str], post_id: int) -> list[tuple[str, str, str, bool]]:
    """(candidate, row label, path, needs the token)."""
    rows = []
    for name in candidates:
        feed_path = CANDIDATES[name][2]
        rows += [
            (name, f"GET {feed_path} hot", feed_path, True),
            (name, "GET /api/posts/{id} hot", f"/api/posts/{post_id}", True),
            (
                name,
                "bare Django view, same bytes",
                "/bench/bare-async" if name == "async" else "/bench/bare",
                False,
            ),
        ]
    rows.append(("plain", "plain ASGI callable + redis.asyncio GET", "/", False))
    return rows


def measure(args: argparse.Namespace) -> str:
    from django.conf import settings

    from core.connections import cache_client

    if not shutil.which("wrk"):
        raise RuntimeError("wrk is not installed: apt-get install wrk (Debian/Ubuntu) or brew install wrk")
    candidates = [c for c in args.candidates.split(",") if c]
    token, post_id = _seed()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "bench.http_settings",
        "DJANGO_DEBUG": "false",
        "DATABASE_URL": database_url(),
        "DATABASE_POOL": "true",
        "REDIS_URL": settings.REDIS_URL,
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
        "BENCH_HTTP_KEY": KEY,
    }
    servers: dict[str, Server] = {}
    behind: list[Server] = []  # the split candidate's servers behind its router
    try:
        for name in candidates:
            if name == "split":
                behind = [
                    Server(gunicorn_command, env),
                    Server(lambda p: [*UVICORN, ASGI_APP, "--port", str(p)], env),
                ]
                http, ws = (f"127.0.0.1:{server.port}" for server in behind)
                router = ["-m", "themoon.router", "--http", http, "--ws", ws]
                servers[name] = Server(lambda p, router=router: [*router, "--port", str(p)], env)
                continue
            command, extra, _ = CANDIDATES[name]
            servers[name] = Server(command, {**env, **extra})
        servers["plain"] = Server(
            lambda port: [*UVICORN, "bench.http_plain:application", "--port", str(port)], env
        )
        for server in [*behind, *servers.values()]:
            server.wait_listening()
        # Warm every server and cache; the baselines serve the hot feed's own bytes.
        feed_bytes = _fetch(servers[candidates[0]].port, "/api/feed", token)
        cache_client().set(KEY, feed_bytes, ex=3600)
        rows = _rows(candidates, post_id)
        for name, _, path, needs_token in rows:
            try:
                for _ in range(20):
                    _fetch(servers[name].port, path, token if needs_token else None)
            except OSError as exc:
                raise RuntimeError(f"{name} {path}: {exc}\n{servers[name].tail()}") from exc
        runs: dict[tuple[str, str], list[dict[str, float]]] = {}
        for _ in range(args.rounds):
            for name, label, path, needs_token in rows:
                got = wrk(
                    servers[name].port, path, token if needs_token else None, args.seconds, args.connections
                )
                runs.setdefault((name, label), []).append(got)
    finally:
        for server in [*servers.values(), *behind]:
            server.stop()
    return _report(candidates, rows, runs, args)


def _vs_bare(runs, name: str, label: str) -> str:
    """The median over rounds of (this row's req/s / the bare view's in the same round): each round
    runs a candidate's rows back to back, so a slow spell of the machine hits both sides alike."""
    ratios = [
        got["rps"] / bare["rps"]
        for got, bare in zip(runs[name, label], runs[name, "bare Django view, same bytes"], strict=True)
    ]
    each = ", ".join(f"{ratio:.2f}" for ratio in ratios)
    return f"{statistics.median(ratios):.2f}x" + (f" (rounds: {each})" if len(ratios) > 1 else "")


def _report(candidates, rows, runs, args) -> str:
    best = {row: max(got, key=lambda g: g["rps"]) for row, got in runs.items()}
    plain = best["plain", rows[-1][1]]
    lines = []
    for name, label, _, _ in rows:
        got = best[name, label]
        lines.append(
            (
                name,
                label,
                got["rps"],
                _vs_bare(runs, name, label) if name != "plain" else "-",
                f"{got['rps'] / plain['rps']:.2f}x",
                got["p50"],
                got["p99"],
                got["load"],
            )
        )
    headers = ["server", "path", "req/s", "vs bare Django (same server)", "vs plain ASGI", "p50 ms", "p99 ms"]
    headers.append("load avg (1 min)")
    legend = (
        f"{environment()}; wrk -t2 -c{args.connections}, {args.seconds:.0f} s per row, {args.rounds} "
        "interleaved rounds (req/s, p50, p99: the best round; vs bare: the median of the per-round ratios); "
        "one web process each, loopback, warm cache, bearer token.\n"
        "deployed: uvicorn on themoon.asgi as the Procfile runs it (HTTP on Django's WSGI handler in "
        "threads, themoon/wsgi_bridge.py); split: themoon/router.py on one port in front of gunicorn (HTTP) "
        "and uvicorn (/ws/); wsgi: gunicorn gthread (themoon/gunicorn.conf.py) alone; granian: granian's "
        "WSGI mode alone (HTTP only, no access log); asgi: uvicorn, Django's ASGI handler; "
        "async: Django's ASGI handler, async-capable middleware only, an async feed view on redis.asyncio "
        "(its bare row is an async view too).\n"
        "Targets: GET /api/feed >= 0.6x the bare Django view, >= 1,000 req/s, p99 <= 25 ms."
    )
    return legend + "\n\n" + table(headers, lines)


def run(**overrides) -> str:
    args = argparse.Namespace(**{**vars(ARGS), **overrides})
    with bench_database():
        return measure(args)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name, default in vars(ARGS).items():
        parser.add_argument(f"--{name}", type=type(default), default=default)
    print(run(**vars(parser.parse_args())))


if __name__ == "__main__":
    main()
