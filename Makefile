# themoon: `make run` is the one-command quickstart (venv, Redis, migrate, demo data, all processes).
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.ONESHELL:
.DEFAULT_GOAL := run

VENV := .venv
PY := $(VENV)/bin/python
PYTHON ?= $(shell command -v python3.11 || command -v python3)
# Only read here (not exported): the test settings pick their own Redis databases when it is unset.
REDIS_URL ?= redis://127.0.0.1:6379/0
RUN_DIR := $(CURDIR)/.run
PYTEST_ARGS ?=
# Exit 0 when the database already has users, 3 when it has none (anything else is an error).
HAS_USERS := import sys; from django.contrib.auth import get_user_model; sys.exit(0 if get_user_model().objects.exists() else 3)

# `make test-cluster`: a 6-node Redis Cluster on CLUSTER_PORT_BASE..+5 (scripts/redis-cluster); the
# broker and the channel layer on the standalone Redis of REDIS_URL (databases 14 and 13).
CLUSTER_PORT_BASE ?= 7100
STANDALONE_REDIS := $(shell echo '$(REDIS_URL)' | sed -E 's#^(rediss?://[^/]+).*#\1#')

.PHONY: venv venv-dev redis run test test-cluster lint bench lock soak

# The product's packages only (requirements.txt): what `make run` needs.
venv: $(VENV)/.installed
# Those plus tests, benches and lint (requirements-dev.txt): `make test`, `make bench`, CI.
venv-dev: $(VENV)/.installed-dev

# Reinstall only when a lock is newer than its stamp.
$(VENV)/.installed: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -r requirements.txt
	touch $@

$(VENV)/.installed-dev: requirements-dev.txt $(VENV)/.installed
	$(PY) -m pip install --disable-pip-version-check -r requirements-dev.txt
	touch $@

# Regenerate both locks from requirements.in and requirements-dev.in in a scratch venv.
lock:
	tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT
	$(PYTHON) -m venv "$$tmp/venv"
	pip="$$tmp/venv/bin/python -m pip --disable-pip-version-check"
	$$pip install --quiet -r requirements.in
	$$pip freeze --exclude-editable | LC_ALL=C sort -f -t= -k1,1 > "$$tmp/runtime"
	$$pip install --quiet -r requirements-dev.in
	$$pip freeze --exclude-editable > "$$tmp/all"
	{ echo "# The product's lock, generated from requirements.in by \`make lock\`: do not edit by hand."
	  cat "$$tmp/runtime"; } > requirements.txt
	{ echo "# The development lock (tests, benches, lint), generated from requirements-dev.in by \`make lock\`."
	  echo "-r requirements.txt"; LC_ALL=C comm -23 <(LC_ALL=C sort "$$tmp/all") <(LC_ALL=C sort "$$tmp/runtime") | LC_ALL=C sort -f -t= -k1,1; } \
	  > requirements-dev.txt

# Use the Redis at REDIS_URL if it answers; otherwise start a throwaway local one (no persistence).
redis:
	@url='$(REDIS_URL)'
	to=; if command -v timeout >/dev/null; then to='timeout 2'; fi  # a port that never answers
	ping() { [ "$$($$to redis-cli -u "$$url" ping 2>/dev/null)" = PONG ]; }
	if ping; then echo "redis: up at $$url"; exit 0; fi
	hostport=$${url#*://}; hostport=$${hostport##*@}; hostport=$${hostport%%/*}
	host=$${hostport%:*}; port=$${hostport##*:}; [ "$$port" != "$$hostport" ] || port=6379
	case "$$host" in 127.0.0.1|localhost|'') ;; *) echo "redis: nothing answers at $$url, and $$host is not this machine" >&2; exit 1;; esac
	if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
	  echo "redis: nothing answers at $$url and redis-server/redis-cli are not on PATH." >&2
	  echo "       Install them (Debian/Ubuntu: sudo apt-get install redis-server; macOS: brew install redis)," >&2
	  echo "       or point REDIS_URL at a running Redis." >&2
	  exit 1
	fi
	mkdir -p "$(RUN_DIR)"
	echo "redis: starting redis-server on 127.0.0.1:$$port (log: .run/redis-$$port.log)"
	redis-server --daemonize yes --bind 127.0.0.1 --port "$$port" --save "" --appendonly no \
	  --dir "$(RUN_DIR)" --logfile "$(RUN_DIR)/redis-$$port.log" --pidfile "$(RUN_DIR)/redis-$$port.pid"
	SECONDS=0
	while (( SECONDS < 10 )); do
	  if ping; then echo "redis: up (stop it with: redis-cli -p $$port shutdown nosave)"; exit 0; fi
	  sleep 0.2
	done
	echo "redis: redis-server did not answer on port $$port within 10 s. Its log:" >&2
	tail -n 20 "$(RUN_DIR)/redis-$$port.log" >&2 || true
	exit 1

# web on one port (8000): HTTP on Django's WSGI handler in threads, WebSockets on Channels (README, Processes).
run: venv redis
	mkdir -p .run
	export PYTHONUNBUFFERED=1
	# A developer's machine: debug pages on (loopback only; see the README's security section).
	export DJANGO_DEBUG="$${DJANGO_DEBUG:-true}"
	$(PY) manage.py migrate --noinput
	$(PY) manage.py collectstatic --noinput --verbosity 0  # WhiteNoise serves /static/ from it
	rc=0; $(PY) manage.py shell --verbosity 0 -c "$(HAS_USERS)" || rc=$$?
	case $$rc in
	  0) echo "seed: the database has users already, skipping seed_demo" ;;
	  3) $(PY) manage.py seed_demo --users 200 --posts 2000 ;;
	  *) echo "seed: could not count users (exit $$rc)" >&2; exit $$rc ;;
	esac
	exec $(VENV)/bin/honcho start -f Procfile.dev

test: venv-dev redis
	$(PY) -m pytest $(PYTEST_ARGS)

# The Redis-faults chaos test at soak size (not in CI): SOAK_OPS operations (default 1,000,000), its
# fault schedule repeated every SOAK_CYCLE_OPS (default 20,000); prints the summary table at the end.
SOAK_OPS ?= 1000000
SOAK_CYCLE_OPS ?= 20000
soak: venv-dev redis
	CHAOS_OPS=$(SOAK_OPS) CHAOS_CYCLE_OPS=$(SOAK_CYCLE_OPS) CHAOS_TIMEOUT=$${CHAOS_TIMEOUT:-172800} \
	  $(PY) -m pytest -p no:cacheprovider -s -q tests/test_chaos_redis.py $(PYTEST_ARGS)

# The whole suite against a real cluster, minus the few tests marked standalone_only.
test-cluster: venv-dev redis
	export REDIS_CLUSTER_PORT_BASE=$(CLUSTER_PORT_BASE)
	scripts/redis-cluster start
	trap 'scripts/redis-cluster stop' EXIT
	base=$(CLUSTER_PORT_BASE)
	REDIS_CLUSTER=true REDIS_URL=redis://127.0.0.1:$$base \
	  REDIS_CLUSTER_NODES=127.0.0.1:$$((base + 1)),127.0.0.1:$$((base + 2)) \
	  CELERY_BROKER_URL=$(STANDALONE_REDIS)/14 CHANNEL_LAYER_REDIS_URL=$(STANDALONE_REDIS)/13 \
	  $(PY) -m pytest -m "not standalone_only" $(PYTEST_ARGS)

lint: venv-dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

bench: venv-dev redis
	$(PY) -m bench
