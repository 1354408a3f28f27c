"""Settings of bench/http.py's servers: the product's, with the bench urlconf mounted over it.

BENCH_ASYNC_MIDDLEWARE=1 keeps only async-capable middleware (drops RequestBodyLimitMiddleware,
whose job asgi_body_limit does under ASGI), for the fully async candidate.
"""

import os

from themoon.settings import *  # noqa: F403
from themoon.settings import MIDDLEWARE

ROOT_URLCONF = "bench.http_app"
if os.environ.get("BENCH_ASYNC_MIDDLEWARE") == "1":
    MIDDLEWARE = [m for m in MIDDLEWARE if m != "core.http.RequestBodyLimitMiddleware"]
