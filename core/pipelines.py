"""A batch of Redis commands for one round trip, recorded by us: what `client.pipeline(transaction=False)`
returns on the product's clients (`core.connections`), on one Redis and on Redis Cluster alike.

Why not redis-py's pipelines directly: a `ClusterPipeline` is not a `Pipeline`, blocks EVALSHA and
MGET, and its queue is private; on either kind, knowing what was queued meant reading private state.
A `Batch` keeps its own list of `(args, options)`, so `len(batch)`, `batch.commands` and a replay are
ours. Executing it:

- on one Redis: one pipeline (fed as commands are queued, so no second pass); NOSCRIPT in the
  results loads every known script and runs the batch once more (what we queue is idempotent);
- on a cluster: the commands are grouped by the primary that owns their key's slot and each group
  is one pipeline to that node, in queued order (EVALSHA included: our scripts touch one slot).
  A command answered MOVED/ASK/TRYAGAIN/CLUSTERDOWN, or whose node failed to answer, is sent again
  alone through the cluster client, which follows redirections and refreshes its slot map.

Results come back in queued order, as a pipeline's do. Connection errors propagate.
"""

from collections.abc import Sequence
from typing import Any

import redis
from redis.cluster import RedisCluster
from redis.commands.core import CoreCommands
from redis.exceptions import AskError, ClusterDownError, NoScriptError, TryAgainError

# Answers that mean "ask the cluster again" rather than "this command failed".
_REDIRECTED = (AskError, TryAgainError, ClusterDownError)
_SCRIPT_COMMANDS = {"EVALSHA", "EVAL", "EVALSHA_RO", "EVAL_RO"}


class Batch(CoreCommands):
    """Commands queued with the usual command methods (`batch.set(...)`, `batch.evalsha(...)`),
    sent by `execute()`. Not a transaction: per-key order is kept, nothing more."""

    def __init__(self, client: redis.Redis | RedisCluster) -> None:
        self.client = client
        self.cluster = isinstance(client, RedisCluster)
        self.commands: list[tuple[tuple, dict]] = []
        self._pipe = None if self.cluster else redis.Redis.pipeline(client, transaction=False)

    def __len__(self) -> int:
        return len(self.commands)

    def __bool__(self) -> bool:
        return True

    def __enter__(self) -> "Batch":
        return self

    def __exit__(self, *exc_info) -> None:
        self.reset()

    def get_encoder(self):
        return self.client.get_encoder()

    def execute_command(self, *args, **options) -> "Batch":
        self.commands.append((args, options))
        if self._pipe is not None:
            self._pipe.execute_command(*args, **options)
        return self

    def reset(self) -> None:
        self.commands = []
        if self._pipe is not None:
            self._pipe.reset()

    def execute(self, raise_on_error: bool = True) -> list:
        """Send everything queued; the results in queued order (errors in place when
        `raise_on_error` is false, else the first one raised). The batch is empty afterwards."""
        commands, self.commands = self.commands, []
        if not commands:
            return []
        if self.cluster:
            results = _execute_on_cluster(self.client, commands)
        else:
            pipe, self._pipe = self._pipe, redis.Redis.pipeline(self.client, transaction=False)
            results = pipe.execute(raise_on_error=False)
            if any(isinstance(result, NoScriptError) for result in results):
                load_known_scripts(self.client)
                results = _run_pipeline(self.client, commands)
        if raise_on_error:
            for result in results:
                if isinstance(result, Exception):
                    raise result
        return results


def batch(client: redis.Redis | RedisCluster) -> Batch:
    """A new empty batch on `client`."""
    return Batch(client)


# The source of every Lua script this process knows, by SHA (core.caching.scripts registers them).
_script_sources: dict[str, str] = {}


def remember_script(sha: str, source: str) -> None:
    """Make `source` one of the scripts a batch loads again after NOSCRIPT."""
    _script_sources[sha] = source


def load_known_scripts(client: redis.Redis | RedisCluster) -> None:
    """SCRIPT LOAD every script this process knows (on a cluster: on every primary)."""
    for source in list(_script_sources.values()):
        client.script_load(source)


def routing_key(args: Sequence) -> Any:
    """The key that decides a command's slot: the first key of a script, else the first argument."""
    name = str(args[0]).upper()
    if name in _SCRIPT_COMMANDS:
        return args[3] if int(args[2]) > 0 else None
    return args[1] if len(args) > 1 else None


def _run_pipeline(client: redis.Redis, commands: Sequence[tuple[tuple, dict]]) -> list:
    pipe = redis.Redis.pipeline(client, transaction=False)
    for args, options in commands:
        pipe.execute_command(*args, **options)
    return pipe.execute(raise_on_error=False)


def _execute_on_cluster(client: RedisCluster, commands: list[tuple[tuple, dict]]) -> list:
    groups: dict[str, tuple[Any, list[int]]] = {}
    for index, (args, _options) in enumerate(commands):
        key = routing_key(args)
        node = client.get_node_from_key(key) if key is not None else client.get_random_node()
        groups.setdefault(node.name, (node, []))[1].append(index)
    results: list = [None] * len(commands)
    for node, indexes in groups.values():
        group = [commands[index] for index in indexes]
        try:
            node_client = client.get_redis_connection(node)
            answers = _run_pipeline(node_client, group)
            if any(isinstance(answer, NoScriptError) for answer in answers):
                load_known_scripts(node_client)
                answers = _run_pipeline(node_client, group)
        except (redis.ConnectionError, redis.TimeoutError):
            answers = [None] * len(group)  # the node is gone: each command goes through the client
            redirected = set(range(len(group)))
        else:
            redirected = {i for i, answer in enumerate(answers) if isinstance(answer, _REDIRECTED)}
        for position, index in enumerate(indexes):
            redo = position in redirected
            results[index] = _direct(client, *commands[index]) if redo else answers[position]
    return results


def _direct(client: RedisCluster, args: tuple, options: dict) -> Any:
    """One command through the cluster client (its redirections and slot refreshes); a Redis error
    other than a connection failure comes back as the result, as in a pipeline."""
    try:
        try:
            return client.execute_command(*args, **options)
        except NoScriptError:
            load_known_scripts(client)
            return client.execute_command(*args, **options)
    except (redis.ConnectionError, redis.TimeoutError):
        raise
    except redis.RedisError as exc:
        return exc
