"""themoon settings: every value comes from the environment, with a safe local default.

The README's configuration table documents each variable read here.
"""

import os
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from themoon.debug_guard import is_local_host, refuse_debug_with_public_hosts

BASE_DIR = Path(__file__).resolve().parent.parent


def env_str(name: str, default: str) -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return default if value in (None, "") else int(value)


def env_float(name: str, default: float) -> float:
    value = os.environ.get(name)
    return default if value in (None, "") else float(value)


def env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


def redis_db_url(url: str, db: int) -> str:
    """The same Redis server as `url`, another database number (used only for the broker split)."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{db}", parts.query, parts.fragment))


# Off unless a developer asks (`make run` does); on together with a non-local host it refuses to load.
DEBUG = env_bool("DJANGO_DEBUG", False)
# The local default is only for a developer machine; production must set DJANGO_SECRET_KEY.
SECRET_KEY = env_str("DJANGO_SECRET_KEY", "themoon-local-development-key-not-for-production")
if not DEBUG and SECRET_KEY.startswith("themoon-local-"):
    raise RuntimeError("Set DJANGO_SECRET_KEY when DJANGO_DEBUG is off.")
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1],testserver")
refuse_debug_with_public_hosts(DEBUG, ALLOWED_HOSTS)

# Browser origins allowed to open a WebSocket: scheme, host AND port must match one entry exactly.
# Default: http://<host>:<PORT> for local hosts, https://<host> for the others (behind a TLS proxy).
WEB_PORT = env_int("PORT", 8000)
WEBSOCKET_ALLOWED_ORIGINS = env_list(
    "WEBSOCKET_ALLOWED_ORIGINS",
    ",".join(
        f"http://{host}:{WEB_PORT}" if is_local_host(host) else f"https://{host}"
        for host in ALLOWED_HOSTS
        if "*" not in host and not host.startswith(".")
    ),
)
for _origin in WEBSOCKET_ALLOWED_ORIGINS:
    # An entry without a scheme would match any port of its host (channels' OriginValidator).
    if "://" not in _origin:
        raise RuntimeError(f"WEBSOCKET_ALLOWED_ORIGINS entries are scheme://host[:port], not {_origin!r}")

# /metrics and the detailed /api/health: a bearer secret, or (unset) loopback only (ops/access.py).
OPS_TOKEN = env_str("OPS_TOKEN", "")
# Bodies larger than this answer 413 before they are read (core/http.py).
REQUEST_BODY_MAX_BYTES = env_int("REQUEST_BODY_MAX_BYTES", 1_048_576)
DATA_UPLOAD_MAX_MEMORY_SIZE = REQUEST_BODY_MAX_BYTES
# Threads serving HTTP in each web process (themoon/asgi.py: Django's WSGI handler, themoon/wsgi_bridge.py).
WEB_THREADS = env_int("WEB_THREADS", 8)
CSRF_FAILURE_VIEW = "core.http.csrf_failure"

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "corsheaders",
    # As an app, django-ninja renders /api/docs from its bundled Swagger UI (static files), not a CDN.
    "ninja",
    "channels",
    "core",
    "accounts",
    "feed",
    "chat",
    "workers",
    "web",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Static files straight from STATIC_ROOT (collectstatic), before sessions and the rest.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    # Before CommonMiddleware, so that its redirects carry the CORS headers too.
    "corsheaders.middleware.CorsMiddleware",
    "core.http.RequestBodyLimitMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "core.http.LazyMessageMiddleware",  # Django's, with the storage made on first use (the admin's)
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "themoon.urls"
WSGI_APPLICATION = "themoon.wsgi.application"
ASGI_APPLICATION = "themoon.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.parse(
        env_str("DATABASE_URL", f"sqlite:///{BASE_DIR / 'db.sqlite3'}"),
        conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 60),
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql" and env_bool("DATABASE_POOL", False):
    # For the web process (the Procfile sets it): under ASGI every request runs in a fresh thread,
    # and per-thread persistent connections would pile up until PostgreSQL refuses more. A pool
    # shares a bounded set instead (psycopg_pool). Not for Celery workers: a pool does not survive
    # the prefork pool's fork.
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": 1,
        "max_size": env_int("DATABASE_POOL_MAX_SIZE", 20),
        "timeout": 10,
    }
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # A publishing create's one statement (core/one_statement.py) is sent as a prepared statement,
    # planned once per connection: ~100 us less per create here. Only that statement: the ORM's own
    # cursors bind client-side and never prepare. Off (None) behind a pooler that cannot hold
    # prepared statements (PgBouncer in transaction mode before 1.21, or without
    # max_prepared_statements).
    DATABASES["default"].setdefault("OPTIONS", {})["prepare_threshold"] = (
        5 if env_bool("DATABASE_PREPARED_STATEMENTS", True) else None
    )
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Several processes (web, worker, beat) share the file: wait for locks instead of failing.
    DATABASES["default"]["OPTIONS"] = {"timeout": 20, "transaction_mode": "IMMEDIATE"}
    DATABASES["default"]["CONN_MAX_AGE"] = 0

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_USER_MODEL = "accounts.AppUser"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
# `collectstatic` fills it (the release step, the Dockerfile, `make run`); WhiteNoise serves it.
STATIC_ROOT = Path(env_str("STATIC_ROOT", str(BASE_DIR / "staticfiles")))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    # Hashed, compressed copies: served with far-future cache headers. Under DEBUG WhiteNoise also
    # finds files in the apps directly (no collectstatic needed while developing).
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}

# CORS for a frontend on another origin: off unless CORS_ALLOWED_ORIGINS lists origins
# (scheme://host[:port], comma-separated). Only the API answers them; cookies only when asked.
CORS_ALLOWED_ORIGINS = env_list("CORS_ALLOWED_ORIGINS", "")
CORS_ALLOW_CREDENTIALS = env_bool("CORS_ALLOW_CREDENTIALS", False)
CORS_URLS_REGEX = r"^/api/.*$"

# --- Redis: cache, streams, channel layer, Celery broker -------------------------------------
REDIS_URL = env_str("REDIS_URL", "redis://127.0.0.1:6379/0")
# Redis Cluster for the cache and the events (README, "Redis Cluster"): REDIS_URL (and
# EVENTS_REDIS_URL) then name one startup node, REDIS_CLUSTER_NODES (host:port, comma-separated)
# more; database numbers are ignored (no SELECT on a cluster). The Celery broker and the channel
# layer have no cluster support and must name their own standalone servers.
REDIS_CLUSTER = env_bool("REDIS_CLUSTER", False)
REDIS_CLUSTER_NODES = env_list("REDIS_CLUSTER_NODES", "")
# The events server: streams, consumer groups, dead letters, consumer heartbeats and outbox sent
# marks, the state that must never be evicted (noeviction + AOF). Default: the cache's server.
EVENTS_REDIS_URL = env_str("EVENTS_REDIS_URL", "") or REDIS_URL
# Web and worker refuse to start when the events server has an evicting maxmemory-policy; this
# overrides the refusal (a loud warning instead), e.g. for a throwaway demo on one allkeys-lru Redis.
EVENTS_REDIS_ALLOW_EVICTION = env_bool("EVENTS_REDIS_ALLOW_EVICTION", False)
# Short timeouts: a dead Redis must cost a request milliseconds, not seconds.
REDIS_SOCKET_CONNECT_TIMEOUT = env_float("REDIS_SOCKET_CONNECT_TIMEOUT", 0.05)
REDIS_SOCKET_TIMEOUT = env_float("REDIS_SOCKET_TIMEOUT", 0.25)

CACHES = {
    "default": {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": REDIS_URL,
        # Our keys are already namespaced and versioned by CacheKeyBuilder: no second prefix.
        "KEY_FUNCTION": "core.caching.keys.identity_key",
        "OPTIONS": {
            # DefaultClient, plus a get_many without cross-slot MGET on a cluster.
            "CLIENT_CLASS": "core.caching.backend.CacheClient",
            # Non-transactional pipelines are our batches (core.pipelines), on both kinds of client.
            "REDIS_CLIENT_CLASS": "core.connections.StandaloneRedis",
            "SERIALIZER": "core.caching.serializers.CacheSerializer",
            "SOCKET_CONNECT_TIMEOUT": REDIS_SOCKET_CONNECT_TIMEOUT,
            "SOCKET_TIMEOUT": REDIS_SOCKET_TIMEOUT,
            "CONNECTION_POOL_KWARGS": {"max_connections": env_int("REDIS_MAX_CONNECTIONS", 100)},
        },
    }
}
if REDIS_CLUSTER:
    CACHES["default"]["OPTIONS"]["CONNECTION_FACTORY"] = "core.caching.backend.ClusterConnectionFactory"
# Sessions live in the database: a Redis outage must not log everybody out.
SESSION_ENGINE = "django.contrib.sessions.backends.db"


def _required_off_cluster(name: str, default: str) -> str:
    """`name` from the environment; off a cluster `default` (a database of REDIS_URL's server)."""
    value = env_str(name, "")
    if value:
        return value
    if REDIS_CLUSTER:
        raise ImproperlyConfigured(f"REDIS_CLUSTER=true: set {name} to a standalone server (no cluster)")
    return default


# The channel layer: REDIS_URL's server by default; a comma-separated list of standalone Redis URLs
# makes channels-redis shard groups and channels over them (it has no Redis Cluster support).
CHANNEL_LAYER_REDIS_URL = _required_off_cluster("CHANNEL_LAYER_REDIS_URL", REDIS_URL)
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {
            # channels-redis waits in BZPOPMIN for 5 s; redis-py 8 would time the read out at 5 s and
            # kill every idle WebSocket consumer (django/channels_redis#422): give the read room.
            "hosts": [
                {"address": address.strip(), "socket_timeout": 15, "socket_connect_timeout": 2}
                for address in CHANNEL_LAYER_REDIS_URL.split(",")
                if address.strip()
            ],
            "prefix": "themoon:ws",
        },
    }
}

# How long a cache strategy stops calling Redis after a connection failure (a circuit breaker).
CACHE_FAILURE_BACKOFF_SECONDS = env_float("CACHE_FAILURE_BACKOFF_SECONDS", 1.0)
# Cache-aside stampede protection: how long a loader's lease lasts, how long others wait for it.
CACHE_LEASE_SECONDS = env_float("CACHE_LEASE_SECONDS", 5.0)
CACHE_LEASE_WAIT_SECONDS = env_float("CACHE_LEASE_WAIT_SECONDS", 1.0)
# Stale-while-revalidate on the cache-aside strategies that set a `soft_ttl` (post details, counts):
# past it an entry is served while one reader refreshes it. BETA scales XFetch's early refresh
# (0 = only once past the soft TTL). ENABLED=false turns it off everywhere.
CACHE_SWR_ENABLED = env_bool("CACHE_SWR_ENABLED", True)
CACHE_SWR_BETA = env_float("CACHE_SWR_BETA", 1.0)
# How long a process trusts its copy of a namespace's epoch before asking Redis again.
CACHE_NAMESPACE_EPOCH_TTL_SECONDS = env_float("CACHE_NAMESPACE_EPOCH_TTL_SECONDS", 1.0)

# --- Events and streams ---------------------------------------------------------------------
EVENTS_STREAM_PREFIX = env_str("EVENTS_STREAM_PREFIX", "themoon:events")
# Partitions per domain stream (hash-tagged, spread over a cluster's masters); 1 keeps the
# unpartitioned names. Change it only with the pipeline drained (README, "Scaling").
EVENTS_STREAM_PARTITIONS = env_int("EVENTS_STREAM_PARTITIONS", 1)
# On a Redis Cluster a consumer cannot block on several slots at once: idle, it polls this often.
EVENTS_CLUSTER_POLL_MS = env_int("EVENTS_CLUSTER_POLL_MS", 20)
# Safety valve on XADD (approximate). Normal trimming is the trim task, which never drops
# entries a consumer group has not acknowledged.
EVENTS_STREAM_MAXLEN = env_int("EVENTS_STREAM_MAXLEN", 1_000_000)
EVENTS_CONSUMER_GROUP = env_str("EVENTS_CONSUMER_GROUP", "cache")
EVENTS_BATCH_SIZE = env_int("EVENTS_BATCH_SIZE", 500)
EVENTS_BLOCK_MS = env_int("EVENTS_BLOCK_MS", 1000)
# A pending entry idle this long belongs to a consumer presumed dead, and is reclaimed.
EVENTS_CLAIM_IDLE_MS = env_int("EVENTS_CLAIM_IDLE_MS", 30_000)
EVENTS_MAX_DELIVERIES = env_int("EVENTS_MAX_DELIVERIES", 5)
EVENTS_DEAD_LETTER_MAXLEN = env_int("EVENTS_DEAD_LETTER_MAXLEN", 10_000)
# Run the consumer inside `celery worker` (a bootstep). Off for workers that only run tasks.
EVENTS_CONSUMER_ENABLED = env_bool("EVENTS_CONSUMER_ENABLED", True)
# Apply an event's direct cache effects in the writing process right after commit, in the
# XADD's round trip: read-your-writes before the worker catches up.
EVENTS_APPLY_ON_COMMIT = env_bool("EVENTS_APPLY_ON_COMMIT", True)
# PostgreSQL: a publishing create writes its row and outbox rows in one statement (core/one_statement.py).
EVENTS_ONE_STATEMENT_CREATE = env_bool("EVENTS_ONE_STATEMENT_CREATE", True)
# The relay republishes outbox rows older than this (younger ones are being flushed on commit).
EVENTS_OUTBOX_RELAY_AGE_SECONDS = env_float("EVENTS_OUTBOX_RELAY_AGE_SECONDS", 5.0)
EVENTS_OUTBOX_RELAY_BATCH = env_int("EVENTS_OUTBOX_RELAY_BATCH", 500)
# Before deleting outbox rows on a Redis with replicas (a cluster; one Redis with replicas
# connected), the relay waits this long per node for one replica to confirm (WAIT 1 <ms>); rows no
# replica confirmed stay for the next pass. 0: no confirmation (replication loss can lose events).
# At most half of REDIS_SOCKET_TIMEOUT is used (the answer must beat the socket's read timeout).
EVENTS_REPLICA_WAIT_MS = env_int("EVENTS_REPLICA_WAIT_MS", 100)
# Every worker's stream consumer relays the outbox this often (and at once after its Redis came
# back), draining until the backlog is empty: delivery needs no beat.
EVENTS_RELAY_INTERVAL_SECONDS = env_float("EVENTS_RELAY_INTERVAL_SECONDS", 5.0)
# How long one relay pass may run before the consumer goes back to its streams (it resumes next
# round); the writing process's background drain after an outage uses the same bound per pass.
EVENTS_RELAY_PASS_SECONDS = env_float("EVENTS_RELAY_PASS_SECONDS", 2.0)
# Followers per Celery task when a post invalidates many feeds.
FEED_FANOUT_CHUNK = env_int("FEED_FANOUT_CHUNK", 1000)
# Authors with at most this many followers have their followers' feeds invalidated inside the
# post's commit-time round trip (from a cached follower set); larger audiences, or an author whose
# set is not cached, are left to the worker's fan-out (which runs for every post anyway). 0: off.
FEED_INLINE_FANOUT_MAX = env_int("FEED_INLINE_FANOUT_MAX", 200)

# --- Popularity and pre-warming --------------------------------------------------------------
POPULARITY_BUCKET_SECONDS = env_int("POPULARITY_BUCKET_SECONDS", 3600)
POPULARITY_BUCKETS = env_int("POPULARITY_BUCKETS", 24)  # a day of hourly buckets
POPULARITY_HALF_LIFE_BUCKETS = env_float("POPULARITY_HALF_LIFE_BUCKETS", 6.0)
POPULARITY_MAX_MEMBERS = env_int("POPULARITY_MAX_MEMBERS", 10_000)  # per bucket
POPULARITY_FLUSH_EVERY = env_int("POPULARITY_FLUSH_EVERY", 100)  # points buffered per process
WARM_POSTS_TOP_K = env_int("WARM_POSTS_TOP_K", 500)
WARM_FEEDS_TOP_K = env_int("WARM_FEEDS_TOP_K", 200)
WARM_FEED_PAGE_SIZE = env_int("WARM_FEED_PAGE_SIZE", 20)
# Without popularity data (Redis flushed), rank among this many most recent posts by the database.
WARM_RECENT_POSTS = env_int("WARM_RECENT_POSTS", 50_000)

# --- Celery ---------------------------------------------------------------------------------
# The broker: Redis (the default, another database of REDIS_URL's server) or RabbitMQ where a
# deployment has one (CELERY_BROKER_URL=amqp://user:password@host:5672/vhost). Either way the worker
# must outlive broker outages: it reconnects forever (no retry budget to exhaust), with bounded
# socket timeouts and health checks so a dead or half-open connection is noticed and replaced.
CELERY_BROKER_URL = _required_off_cluster("CELERY_BROKER_URL", redis_db_url(REDIS_URL, 1))
_BROKER_IS_REDIS = CELERY_BROKER_URL.startswith(("redis://", "rediss://", "unix://"))
# kombu's Redis transport with a guard that keeps a broker outage from ending the worker
# (themoon/broker.py); an amqp:// broker uses kombu's own transport.
CELERY_BROKER_TRANSPORT = (
    "themoon.broker:Transport" if CELERY_BROKER_URL.startswith(("redis://", "rediss://")) else None
)
# Results live in Redis (RabbitMQ keeps no results): the broker's own server when that is Redis.
CELERY_RESULT_BACKEND = env_str(
    "CELERY_RESULT_BACKEND",
    CELERY_BROKER_URL
    if _BROKER_IS_REDIS
    else _required_off_cluster("CELERY_RESULT_BACKEND", redis_db_url(REDIS_URL, 1)),
)
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_RESULT_EXPIRES = 3600
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# None: retry forever. Celery's default (100 attempts, 2 s apart growing to 30 s) ends the worker
# after a long enough outage.
CELERY_BROKER_CONNECTION_MAX_RETRIES = env_int("CELERY_BROKER_CONNECTION_MAX_RETRIES", 0) or None
CELERY_BROKER_CONNECTION_TIMEOUT = env_float("CELERY_BROKER_CONNECTION_TIMEOUT", 4.0)
# AMQP heartbeats: a silent RabbitMQ connection is declared dead after about twice this.
CELERY_BROKER_HEARTBEAT = env_int("CELERY_BROKER_HEARTBEAT", 30)
# With acks_late, a task still running when the broker connection drops cannot be acknowledged on
# the new connection and is delivered again: stop it (tasks are idempotent) rather than run it twice.
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = True
CELERY_BROKER_TRANSPORT_OPTIONS = (
    {
        "socket_connect_timeout": CELERY_BROKER_CONNECTION_TIMEOUT,
        # Above BRPOP's own 1 s timeout, so an idle wait is never mistaken for a dead server.
        "socket_timeout": env_float("CELERY_BROKER_SOCKET_TIMEOUT", 10.0),
        "socket_keepalive": True,
        "health_check_interval": env_int("CELERY_BROKER_HEALTH_CHECK_SECONDS", 10),
        # No transparent replay of a timed-out command: the worker's reconnect loop handles it.
        "retry_on_timeout": False,
    }
    if _BROKER_IS_REDIS
    else {}
)
# The result backend (Redis): reconnect on errors instead of failing the task that stores a result.
CELERY_RESULT_BACKEND_ALWAYS_RETRY = True
CELERY_RESULT_BACKEND_MAX_RETRIES = env_int("CELERY_RESULT_BACKEND_MAX_RETRIES", 10)
CELERY_REDIS_SOCKET_CONNECT_TIMEOUT = CELERY_BROKER_CONNECTION_TIMEOUT
CELERY_REDIS_SOCKET_TIMEOUT = env_float("CELERY_BROKER_SOCKET_TIMEOUT", 10.0)

BEAT_OUTBOX_RELAY_SECONDS = env_float("BEAT_OUTBOX_RELAY_SECONDS", 5.0)
BEAT_STREAM_TRIM_SECONDS = env_float("BEAT_STREAM_TRIM_SECONDS", 60.0)
BEAT_RECLAIM_SECONDS = env_float("BEAT_RECLAIM_SECONDS", 30.0)
BEAT_WARM_POSTS_SECONDS = env_float("BEAT_WARM_POSTS_SECONDS", 300.0)
BEAT_WARM_FEEDS_SECONDS = env_float("BEAT_WARM_FEEDS_SECONDS", 300.0)

# --- Authentication, tokens and throttles -------------------------------------------------
# A bearer token works this many days after it was issued (then 401; list them: GET /api/auth/tokens).
AUTH_TOKEN_TTL_DAYS = env_int("AUTH_TOKEN_TTL_DAYS", 30)
# A token's last use is written to the database at most once per this many seconds.
AUTH_TOKEN_TOUCH_SECONDS = env_int("AUTH_TOKEN_TOUCH_SECONDS", 60)
# Token -> user resolution, cached in Redis (invalidated by events) and in each process for this
# long: a revoked token, a deactivated user, a changed password stop working in every process within
# AUTH_TOKEN_LOCAL_CACHE_SECONDS of the commit (at once in the process that made the change). 0 = off.
AUTH_TOKEN_CACHE_SECONDS = env_int("AUTH_TOKEN_CACHE_SECONDS", 300)
AUTH_TOKEN_LOCAL_CACHE_SECONDS = env_float("AUTH_TOKEN_LOCAL_CACHE_SECONDS", 2.0)
AUTH_TOKEN_LOCAL_CACHE_SIZE = env_int("AUTH_TOKEN_LOCAL_CACHE_SIZE", 10_000)
# A WebSocket ticket (POST /api/auth/ws-ticket) is single-use and lives this long.
AUTH_WS_TICKET_SECONDS = env_int("AUTH_WS_TICKET_SECONDS", 30)

# Rates are "<count>/<period>", a period being s, m, h or d with an optional multiple ("10/5m").
# Counted in Redis (Django's cache); with Redis down every throttle lets requests through.
THROTTLE_LOGIN_ACCOUNT_RATE = env_str("THROTTLE_LOGIN_ACCOUNT_RATE", "10/5m")  # per username
THROTTLE_LOGIN_ADDRESS_RATE = env_str("THROTTLE_LOGIN_ADDRESS_RATE", "60/5m")  # per client address
THROTTLE_TOKEN_MINT_RATE = env_str("THROTTLE_TOKEN_MINT_RATE", "20/h")  # tokens per account
THROTTLE_WS_TICKET_RATE = env_str("THROTTLE_WS_TICKET_RATE", "60/m")  # tickets per user
THROTTLE_WRITE_RATE = env_str("THROTTLE_WRITE_RATE", "120/m")  # HTTP writes per user
THROTTLE_WS_MESSAGE_RATE = env_str("THROTTLE_WS_MESSAGE_RATE", "60/m")  # chat frames per user

# --- API and chat ---------------------------------------------------------------------------
API_PAGE_SIZE_MAX = env_int("API_PAGE_SIZE_MAX", 50)
CHAT_MESSAGE_MAX_LENGTH = env_int("CHAT_MESSAGE_MAX_LENGTH", 4000)
# A conversation's cached member set lives this long at most (chat/cache.py): the bound on a removed
# participant's access when every invalidation failed (normally it ends at the removal's commit).
CHAT_MEMBERS_TTL_SECONDS = env_float("CHAT_MEMBERS_TTL_SECONDS", 300.0)
# How often an open chat socket asks again whether its user is still in the conversation (on its next
# frame or delivery), whether or not the removal's close reached it.
CHAT_MEMBERSHIP_RECHECK_SECONDS = env_float("CHAT_MEMBERSHIP_RECHECK_SECONDS", 10.0)
POST_BODY_MAX_LENGTH = env_int("POST_BODY_MAX_LENGTH", 5000)

# --- Observability --------------------------------------------------------------------------
# /api/health reports 503 when the consumers are this far behind, or none has been seen lately.
HEALTH_MAX_LAG = env_int("HEALTH_MAX_LAG", 10_000)
HEALTH_CONSUMER_IDLE_MS = env_int("HEALTH_CONSUMER_IDLE_MS", 15_000)
# A worker serves its own /metrics (consumer counters, batch and lag histograms) on this port; 0 = off.
WORKER_METRICS_PORT = env_int("WORKER_METRICS_PORT", 0)

LOG_LEVEL = env_str("LOG_LEVEL", "INFO")
LOG_FORMAT = env_str("LOG_FORMAT", "plain")  # or "json": one JSON object per line
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "json": {"()": "core.logs.JsonFormatter"},
    },
    # Credentials never reach a log line: `token=` / `ticket=` query values are redacted from the
    # web server's access and WebSocket lines (uvicorn.access, uvicorn.error) and from our own.
    "filters": {"redact_credentials": {"()": "accounts.redaction.RedactCredentials"}},
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": LOG_FORMAT,
            "filters": ["redact_credentials"],
        },
        "access": {
            "class": "logging.StreamHandler",
            "formatter": LOG_FORMAT,
            "filters": ["redact_credentials"],
            "stream": "ext://sys.stdout",
        },
    },
    "loggers": {
        # Configured here, these replace uvicorn's own handlers (Django configures logging after uvicorn).
        "uvicorn.access": {"handlers": ["access"], "level": "INFO", "propagate": False},
        "uvicorn.error": {"filters": ["redact_credentials"]},
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
}
