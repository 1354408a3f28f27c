"""The heap a server process starts with, frozen out of the garbage collector's way.

CPython's full collection (generation 2) walks every object the collector tracks. A web process
holds about 108,000 of them once Django, django-ninja's schemas, Channels and the admin are loaded,
and a full collection of that heap took 50-90 ms here, several times a minute under load: every
request in flight waited it out. On the deployed server at -c16 that was the p99 (55-65 ms against
a p50 of 9 ms: bench/http.py, with a `gc.callbacks` timer in the web process).

`gc.freeze()` moves everything alive at that point into a permanent generation that no collection
walks again (the use CPython documents for it). What is frozen is the code and configuration that
lives as long as the process; garbage it held was collected just before. Objects made afterwards
(requests, caches in process) are collected as before, so only the size of the walk changes.
A web process builds its URLconf here first: Django builds it on the first request, and it holds
most of the schema objects. A worker freezes before its pool forks (themoon/celery.py), so the
stream consumer's full collections walk only what it made since, and prefork children share the
frozen pages instead of copying them when a collection would touch them.
"""

import gc


def freeze_startup_heap(urlconf: bool = True) -> int:
    """Build the URLconf (`urlconf`), collect, and freeze what is left; the objects now frozen."""
    if urlconf:
        from django.urls import get_resolver

        get_resolver().url_patterns  # noqa: B018 (imports themoon.urls: the API, its schemas, the admin)
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
