"""Authentication cost: a bearer token resolved by the cache vs the ORM lookup it replaced.

    python -m bench.auth [--iterations 5000] [--rounds 10]

In the same run, interleaved rounds (each round runs every operation once, in a shuffled order):

- `ORM lookup (uncached baseline)`: what every request paid before: SELECT token JOIN user by
  digest, then the expiry and is_active checks;
- `resolve, Redis only`: the cache with this process's copies off (two GETs, no query);
- `resolve, process copy`: the default (AUTH_TOKEN_LOCAL_CACHE_SECONDS): no round trip at all;
- and the same three as a whole authenticated request, `GET /api/posts/<id>` (a hot cached post)
  through Django's test client, the bearer check included.

Prints the median per call and the ratio to the uncached baseline of the same kind.
"""

import argparse
import random
import statistics
import time
from collections.abc import Callable
from unittest import mock

from bench.harness import bench_database, environment, table

ARGS = argparse.Namespace(iterations=5_000, rounds=10, seed=5)


def _orm_resolve(token: str):
    """The lookup before the cache (accounts/auth.py before issue 13), as a Credential."""
    from django.utils import timezone

    from accounts.credentials import Credential
    from accounts.models import AuthToken
    from accounts.tokens import digest_of

    found = AuthToken.objects.select_related("user").filter(digest=digest_of(token)).first()
    if found is None or found.expires_at <= timezone.now() or not found.user.is_active:
        return None
    return Credential(found.user, found.pk)


def _operations(token: str, post_id: int) -> dict[str, Callable[[], object]]:
    from django.conf import settings
    from django.test import Client

    from accounts import credentials

    client = Client(headers={"Authorization": f"Bearer {token}"})
    url = f"/api/posts/{post_id}"

    def local_off(fn):
        def run():
            saved, settings.AUTH_TOKEN_LOCAL_CACHE_SECONDS = settings.AUTH_TOKEN_LOCAL_CACHE_SECONDS, 0
            try:
                return fn()
            finally:
                settings.AUTH_TOKEN_LOCAL_CACHE_SECONDS = saved

        return run

    def uncached(fn):
        def run():
            with mock.patch("accounts.auth.resolve", _orm_resolve):
                return fn()

        return run

    def get() -> int:
        response = client.get(url)
        assert response.status_code == 200, response.status_code
        return response.status_code

    return {
        "resolve: ORM lookup (uncached baseline)": lambda: _orm_resolve(token),
        "resolve: Redis only": local_off(lambda: credentials.resolve(token)),
        "resolve: process copy": lambda: credentials.resolve(token),
        "GET /api/posts/<id>: ORM lookup (uncached baseline)": uncached(get),
        "GET /api/posts/<id>: Redis only": local_off(get),
        "GET /api/posts/<id>: process copy": get,
    }


def measure(args: argparse.Namespace) -> list[list[object]]:
    from accounts.tokens import issue_token
    from tests.factories import make_post, make_user

    user = make_user("benchauth")
    token = issue_token(user)
    post = make_post(user, "auth bench")
    ops = _operations(token, post.pk)
    for op in ops.values():  # warm up: connections, the cache entries, the post
        for _ in range(50):
            op()
    samples: dict[str, list[float]] = {name: [] for name in ops}
    per_round = max(1, args.iterations // args.rounds)
    rng = random.Random(args.seed)
    order = list(ops)
    perf = time.perf_counter
    for _ in range(args.rounds):
        rng.shuffle(order)
        for name in order:
            op, sink = ops[name], samples[name]
            for _ in range(per_round):
                started = perf()
                op()
                sink.append(perf() - started)
    rows = []
    for name in ops:
        kind = name.split(":")[0]
        base = statistics.median(samples[f"{kind}: ORM lookup (uncached baseline)"])
        p50 = statistics.median(samples[name])
        rows.append([name, p50 * 1e6, 1 / p50, f"{p50 / base:.2f}x"])
    return rows


def run(args: argparse.Namespace = ARGS) -> str:
    import os

    with bench_database():
        rows = measure(args)
    load = ", load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())
    header = (
        f"### Authentication ({environment()}{load}; {args.iterations:,} calls per operation, "
        f"{args.rounds} interleaved rounds)\n\n"
    )
    return header + table(["operation", "µs/call p50", "calls/s", "vs uncached"], rows)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--iterations", type=int, default=ARGS.iterations)
    parser.add_argument("--rounds", type=int, default=ARGS.rounds)
    parser.add_argument("--seed", type=int, default=ARGS.seed)
    args = parser.parse_args()
    if not 1 <= args.rounds <= args.iterations <= 1_000_000:
        parser.error("need 1 <= rounds <= iterations <= 1,000,000")
    print(run(args))


if __name__ == "__main__":
    main()
