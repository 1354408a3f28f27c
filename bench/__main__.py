"""Run every benchmark that exists and write bench/REPORT.md.

    python -m bench [name ...]     # default: cache_get pipeline chat feed warmup swr http

Each module `bench/<name>.py` with a `run() -> str` is imported and run in turn with its defaults;
a module that does not exist (yet) is skipped with a note. The tables are printed and written to
bench/REPORT.md with the date and the machine (cores, Redis version, database vendor). A benchmark
that raises is reported and the others still run; the exit status is then 1.
"""

import datetime
import importlib
import os
import platform
import sys
import time
import traceback
from pathlib import Path

MODULES = ("cache_get", "pipeline", "chat", "feed", "warmup", "swr", "http")
REPORT = Path(__file__).resolve().parent / "REPORT.md"


def _load(name: str):
    try:
        return importlib.import_module(f"bench.{name}")
    except ModuleNotFoundError as exc:
        if exc.name == f"bench.{name}":
            return None
        raise


def _machine() -> str:
    from django.db import connection

    from core.connections import cache_client

    try:
        redis_version = cache_client().info("server")["redis_version"]
    except Exception as exc:  # the report still says what it could not learn
        redis_version = f"unknown ({exc.__class__.__name__})"
    return (
        f"{os.cpu_count()} cores (nproc), {platform.machine()}, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}, Redis {redis_version}, database {connection.vendor}"
    )


def main(names: list[str]) -> int:
    import bench.harness  # noqa: F401  (Django set up on the benchmark databases)

    started = datetime.datetime.now(datetime.UTC)
    sections, failed = [], []
    for name in names:
        module = _load(name)
        if module is None or not callable(getattr(module, "run", None)):
            note = f"_bench/{name}.py: not there (or has no run()), skipped._"
            print(note, flush=True)
            sections.append(f"## {name}\n\n{note}")
            continue
        print(f"== {name} ...", flush=True)
        began = time.perf_counter()
        try:
            output = module.run()
        except Exception:
            failed.append(name)
            output = "```\n" + traceback.format_exc() + "```"
        seconds = time.perf_counter() - began
        print(output + "\n", flush=True)
        sections.append(f"## {name} ({seconds:.0f} s)\n\n{output}")

    report = [
        "# Benchmark report",
        "",
        f"- date: {started:%Y-%m-%d %H:%M} UTC",
        f"- machine: {_machine()}",
        f"- command: `python -m bench {' '.join(names)}`",
        "",
        *[section + "\n" for section in sections],
    ]
    REPORT.write_text("\n".join(report))
    print(f"wrote {REPORT}")
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:] or list(MODULES)))
