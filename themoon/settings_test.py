"""Settings for the test suite: the real settings, pointed at Redis databases the tests own.

Tests flush Redis database 15 (cache, streams, channel layer) between tests and use 14 as the
Celery broker, so running the suite never touches a development cache in database 0.
"""

import os

os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/15")
os.environ.setdefault("CELERY_BROKER_URL", "redis://127.0.0.1:6379/14")
# Debug is off by default, and then the settings want a real secret key.
os.environ.setdefault("DJANGO_SECRET_KEY", "themoon-test-key-not-for-production")
# The Origin the WebSocket tests send (Django's test host).
os.environ.setdefault("WEBSOCKET_ALLOWED_ORIGINS", "http://testserver")

from themoon.settings import *  # noqa: F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast test users

if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":  # noqa: F405
    # A file, not :memory:, so that subprocesses started by tests (worker, web) see the test data.
    DATABASES["default"]["TEST"] = {"NAME": str(BASE_DIR / f".run/test-{os.getpid()}.sqlite3")}  # noqa: F405
    (BASE_DIR / ".run").mkdir(exist_ok=True)  # noqa: F405

# Pages render and assets are served without a collectstatic first: plain storage (no manifest),
# files found in the apps. tests/test_web_static.py exercises the production storage and root.
STORAGES = {**STORAGES, "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}}  # noqa: F405
WHITENOISE_USE_FINDERS = True
STATIC_ROOT = BASE_DIR / ".run" / "static"  # noqa: F405 (empty; WhiteNoise warns when it is missing)
STATIC_ROOT.mkdir(parents=True, exist_ok=True)

# Throttles stay out of the way of the rest of the suite; tests/test_throttles.py sets low rates.
for _rate in (
    "THROTTLE_LOGIN_ACCOUNT_RATE",
    "THROTTLE_LOGIN_ADDRESS_RATE",
    "THROTTLE_TOKEN_MINT_RATE",
    "THROTTLE_WS_TICKET_RATE",
    "THROTTLE_WRITE_RATE",
    "THROTTLE_WS_MESSAGE_RATE",
):
    globals()[_rate] = "1000000/s"
