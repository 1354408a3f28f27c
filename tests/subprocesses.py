"""The real processes tests start: a private redis-server they may stop and kill, Celery workers and
drivers (tests/chaos_driver.py), and what those processes need to reach the test database."""

import contextlib
import signal
import subprocess
import sys
import time
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


class PrivateRedis:
    """A redis-server of our own on a free port, which a test may stop, kill and restart at will
    (no persistence: a restarted server starts empty, as after losing a cache node)."""

    def __init__(self, port: int, workdir: Path) -> None:
        self.port, self.workdir = port, workdir
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
            ],
            stdout=subprocess.DEVNULL,
        )
        eventually(self._answers, timeout=10)

    def _answers(self) -> bool:
        try:
            return redis.Redis(port=self.port, socket_connect_timeout=0.2).ping()
        except redis.RedisError:
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

    def log(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text()

    def stop_all(self) -> None:
        for process in self.running.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.running.values():
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
