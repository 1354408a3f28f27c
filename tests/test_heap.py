"""Server processes start with their heap frozen out of the garbage collector's walk
(themoon/heap.py): the web entry points when they load, a `celery worker` once it is set up."""

import subprocess
import sys

import pytest

from tests.subprocesses import database_url
from tests.test_security_server import ROOT, clean_env

REPORT = (
    "from django.urls import get_resolver\n"
    "walked = {id(o) for o in gc.get_objects()}\n"
    "print(gc.get_freeze_count(), len(walked), id(get_resolver().url_patterns) in walked)\n"
)


def run(code: str) -> tuple[int, int, str]:
    """(objects frozen, objects a full collection walks, whether the URLconf's list is walked)."""
    env = clean_env(DJANGO_SETTINGS_MODULE="themoon.settings_test", DATABASE_URL=database_url())
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    frozen, walked, patterns_walked = out.stdout.split()
    return int(frozen), int(walked), patterns_walked


@pytest.mark.parametrize("entry", ["themoon.asgi", "themoon.wsgi"])
def test_a_web_process_starts_with_its_heap_and_urlconf_frozen(entry):
    """After the entry point loads, its modules, URLconf and schemas are in the permanent
    generation (gc.get_objects() no longer lists them), and what a full collection still walks
    is a small part of the heap."""
    frozen, walked, patterns_walked = run(f"import gc, {entry}\n" + REPORT)
    assert patterns_walked == "False"
    assert frozen > 50_000
    assert walked < frozen / 10


def test_a_celery_worker_freezes_its_heap_once_set_up():
    """`celeryd_after_setup` (sent by `celery worker` before its pool and the consumer start)."""
    code = (
        "import gc, django\n"
        "django.setup()\n"
        "from celery import signals\n"
        "import themoon.celery\n"
        "before = gc.get_freeze_count()\n"
        "assert before == 0, before\n"
        "signals.celeryd_after_setup.send(sender='worker@test', instance=None, conf=None)\n"
    ) + REPORT
    frozen, walked, _ = run(code)
    assert frozen > 20_000
    assert walked < frozen / 10
