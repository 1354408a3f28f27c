"""A batch of Redis commands for one round trip, recorded by us: what `client.pipeline(transaction=False)`
returns on the product's clients (`core.connections`), on one Redis and on Redis Cluster alike.

Why not redis-py's pipelines directly: a `ClusterPipeline` is not a `Pipeline`, blocks EVALSHA and
MGET, and its queue is private; on either kind, knowing what was queued meant reading private state.
A `Batch` keeps its own list of `(args, options)`, so `len(batch)`, `batch.commands` and a replay are
ours. Executing it:

- on one Redis: one round trip on one pooled connection (`_run_pipeline`: every command packed
  into one write, then the answers read in order through redis-py's own parsing and response
  callbacks, a command's error in its place, as redis-py's pipeline answers with
  raise_on_error=False, without its per-command bookkeeping, which cost about as much as the
  commands themselves in the consumer); NOSCRIPT in the results loads every known script and runs
  the batch once more (what we queue is idempotent);
- on a cluster: the commands are grouped by the primary that owns their key's slot in the client's
  slot map (computed here: no `COMMAND GETKEYS`, which `ClusterPipeline` sends to its default node
  for EVALSHA, ZUNIONSTORE and the like) and each group is one plain pipeline to that node, in
  queued order (EVALSHA included: our scripts touch one slot). Commands answered MOVED or
  CLUSTERDOWN, or whose node failed to answer, are sent again after the slot map was asked for once
  more, grouped per node as before (a node that failed and is still in the map: its error is
  raised, no second wait); what is still redirected then, and every ASK/TRYAGAIN (a slot
  mid-migration), goes alone through the cluster client, which follows redirections.

`confirm_replicas(n, timeout_ms)` also queues a `WAIT n timeout_ms` after each node's commands, in the
same pipeline (so on the connection that sent them), and `batch.replicated` then says, per command,
whether its node reported at least `n` replicas having everything up to that point (a command sent
again through the cluster client, or whose node failed, is not confirmed).

Results come back in queued order, as a pipeline's do. Connection errors propagate: the caller
counts none of the batch as done (the consumer acknowledges none of its events; what did reach
Redis is applied again on redelivery, harmlessly).
"""

import logging
import weakref
from collections.abc import Sequence
from typing import Any

import hiredis
import redis
from redis.cluster import RedisCluster
from redis.commands.core import CoreCommands
from redis.crc import key_slot
from redis.exceptions import (
    AskError,
    ClusterDownError,
    MovedError,
    NoScriptError,
    RedisClusterException,
    TryAgainError,
)

logger = logging.getLogger("core.pipelines")

# Answers that mean "ask the cluster again" rather than "this command failed" (MovedError is an
# AskError).
_REDIRECTED = (AskError, TryAgainError, ClusterDownError)
# The command names as redis-py's methods spell them, and the lower case of a hand-written one.
_SCRIPT_COMMANDS = {
    name for upper in ("EVALSHA", "EVAL", "EVALSHA_RO", "EVAL_RO") for name in (upper, upper.lower())
}


class Batch(CoreCommands):
    """Commands queued with the usual command methods (`batch.set(...)`, `batch.evalsha(...)`),
    sent by `execute()`. Not a transaction: per-key order is kept, nothing more."""

    def __init__(self, client: redis.Redis | RedisCluster) -> None:
        self.client = client
        self.cluster = isinstance(client, RedisCluster)
        self.commands: list[tuple[tuple, dict]] = []
        self._wait: tuple[int, int] | None = None
        self.replicated: list[bool] = []

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
        return self

    def set(self, name, value, ex=None, px=None, nx=False, xx=False, **more):
        """redis-py's `set` for what the product queues (ex or px in whole seconds or milliseconds,
        nx or xx), built here: redis-py's own checks its arguments for experimental ones through a
        decorator, which cost a tenth of the stream consumer's time. Anything else: redis-py's."""
        if more or (nx and xx) or (ex is not None and px is not None) or _not_int(ex) or _not_int(px):
            return super().set(name, value, ex=ex, px=px, nx=nx, xx=xx, **more)
        args = ["SET", name, value]
        if nx:
            args.append("NX")
        elif xx:
            args.append("XX")
        if ex is not None:
            args += ("EX", ex)
        elif px is not None:
            args += ("PX", px)
        return self.execute_command(*args)

    def confirm_replicas(self, numreplicas: int, timeout_ms: int) -> None:
        """At `execute()`: a WAIT after each node's commands; `self.replicated` says per command
        whether its node's WAIT reported `numreplicas` or more (module docstring)."""
        self._wait = (numreplicas, timeout_ms)

    def reset(self) -> None:
        self.commands = []
        self._wait = None

    def execute(self, raise_on_error: bool = True) -> list:
        """Send everything queued; the results in queued order (errors in place when
        `raise_on_error` is false, else the first one raised). The batch is empty afterwards."""
        commands, self.commands = self.commands, []
        wait, self._wait = self._wait, None
        self.replicated = [False] * len(commands)
        if not commands:
            return []
        if self.cluster:
            results = _execute_on_cluster(self.client, commands, wait, self.replicated)
        else:
            results = _run_pipeline(self.client, commands, wait)
            if any(isinstance(result, NoScriptError) for result in results):
                load_known_scripts(self.client)
                results = _run_pipeline(self.client, commands, wait)
            if wait is not None:
                self.replicated = [_enough(results.pop(), wait)] * len(commands)
        if raise_on_error:
            for result in results:
                if isinstance(result, Exception):
                    raise result
        return results


def _not_int(value: Any) -> bool:
    return value is not None and type(value) is not int


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
    if args[0] in _SCRIPT_COMMANDS:
        return args[3] if int(args[2]) > 0 else None
    return args[1] if len(args) > 1 else None


def run_one(client: redis.Redis, args: tuple, options: dict) -> Any:
    """One command in one round trip, as `client.execute_command(*args, **options)` answers it
    (a Redis error raised), through `_run_pipeline`."""
    [answer] = _run_pipeline(client, [(args, options)])
    if isinstance(answer, redis.ResponseError):
        raise answer
    return answer


def _run_pipeline(
    client: redis.Redis, commands: Sequence[tuple[tuple, dict]], wait: tuple[int, int] | None = None
) -> list:
    """The commands in one round trip on one connection of `client`'s pool, then `WAIT *wait` if
    given (its answer last); a command's Redis error is its answer. A connection error or timeout
    is retried as the client's `retry` says (on a fresh connection: the batch is idempotent), then
    raised; a connection that failed, or whose answers were not all read, is closed, never reused."""
    if wait is not None:
        commands = [*commands, (("WAIT", *wait), {})]
    pool = client.connection_pool
    connection = pool.get_connection()
    try:
        return connection.retry.call_with_retry(
            lambda: _round_trip(client, connection, commands), lambda _error: connection.disconnect()
        )
    except BaseException:
        connection.disconnect()  # an answer may be left unread on it
        raise
    finally:
        pool.release(connection)


def _round_trip(client: redis.Redis, connection, commands: Sequence[tuple[tuple, dict]]) -> list:
    connection.send_packed_command(_packed(connection, commands))
    parse = redis.Redis.parse_response  # reading, NEVER_DECODE, EMPTY_RESPONSE, the callbacks
    answers = []
    for args, options in commands:
        try:
            answers.append(parse(client, connection, args[0], **options))
        except redis.ResponseError as exc:
            answers.append(exc)
    return answers


def _packed(connection, commands: Sequence[tuple[tuple, dict]]) -> list[bytes]:
    """The commands in the protocol, as one write: hiredis packs each command at once (redis-py's
    packer checks every argument in Python first); an argument hiredis refuses (a memoryview, a
    wrong type) falls back to redis-py's packing, which converts it or raises DataError."""
    try:
        return [b"".join([hiredis.pack_command(_split_name(args)) for args, _ in commands])]
    except TypeError:
        return connection.pack_commands([args for args, _ in commands])


def _split_name(args: tuple) -> tuple:
    """`("SCRIPT LOAD", source)` as two words, as redis-py sends a command of two words."""
    name = args[0]
    if type(name) is str and " " in name:
        return (*name.split(), *args[1:])
    return args


def _enough(answer: Any, wait: tuple[int, int]) -> bool:
    """Did WAIT's answer report at least the replicas asked for (an error: no)?"""
    return isinstance(answer, int) and answer >= wait[0]


# Per cluster client, slot -> the primary its commands went to (from the client's slot map, looked
# up once: `get_node_from_key` costs more than the rest of a command's routing). A wrong entry
# costs one redirect round at most: a MOVED or a failed node empties it and the map is asked again.
# At most 16,384 entries per client.
_slot_owners: "weakref.WeakKeyDictionary[RedisCluster, dict[int, Any]]" = weakref.WeakKeyDictionary()


def _execute_on_cluster(
    client: RedisCluster,
    commands: list[tuple[tuple, dict]],
    wait: tuple[int, int] | None = None,
    replicated: list[bool] | None = None,
) -> list:
    results: list = [None] * len(commands)
    failed: dict[str, Exception] = {}
    replicated = [False] * len(commands) if replicated is None else replicated
    redo = _send_per_node(client, commands, range(len(commands)), results, failed, wait, replicated)
    if not redo:
        return results
    _slot_owners.pop(client, None)  # some owner we remembered was wrong, or failed
    if not any(_needs_client(results[index]) for index in redo):
        # MOVED, CLUSTERDOWN or a node that did not answer: the slot map is out of date.
        _refresh_slot_map(client)
        redo = _send_per_node(client, commands, redo, results, failed, wait, replicated)
    # One by one, in queued order (per-key order holds: a key's commands share their slot, and
    # the slot's redirected ones are all here).
    for index in redo:
        replicated[index] = False  # not on a connection a WAIT of ours followed
        results[index] = _direct(client, *commands[index])
    return results


def _needs_client(answer: Any) -> bool:
    """ASK (the key is being migrated: ASKING first) or TRYAGAIN: the cluster client's handling."""
    return isinstance(answer, TryAgainError) or (
        isinstance(answer, AskError) and not isinstance(answer, MovedError)
    )


def _send_per_node(
    client: RedisCluster,
    commands: Sequence[tuple[tuple, dict]],
    indexes: Sequence[int],
    results: list,
    failed: dict[str, Exception],
    wait: tuple[int, int] | None = None,
    replicated: list[bool] | None = None,
) -> list[int]:
    """Send `commands[i]` for each i in `indexes`, one pipeline per primary, answers into
    `results[i]`. Returns, in queued order, the indexes to send again: redirected, or their node
    failed to answer (their result is then the connection error; the node goes into `failed`).
    A command whose owner is in `failed` already raises that node's error: the slot map still
    names a node that did not answer, so it cannot be applied now (no second wait for it).
    With `wait`, each node's pipeline ends with that WAIT and `replicated[i]` gets its verdict."""
    groups: dict[str, list[int]] = {}
    nodes: dict[str, Any] = {}
    owners = _slot_owners.get(client)
    if owners is None:
        owners = _slot_owners.setdefault(client, {})
    for index in indexes:
        key = routing_key(commands[index][0])
        if key is None:
            node = client.get_random_primary_node()
        else:
            # The client's keyslot() without its encoder's generality, for our (UTF-8, str) keys.
            slot = key_slot(key.encode()) if type(key) is str else client.keyslot(key)
            node = owners.get(slot)
            if node is None:
                node = owners[slot] = client.get_node_from_key(key)
        positions = groups.get(node.name)
        if positions is None:
            positions = groups[node.name] = []
            nodes[node.name] = node
        positions.append(index)
    for name in groups:
        if name in failed:
            raise failed[name]
    redo: list[int] = []
    for name, positions in groups.items():
        node_client = client.get_redis_connection(nodes[name])
        group = [commands[index] for index in positions]
        try:
            answers = _run_pipeline(node_client, group, wait)
            if any(isinstance(answer, NoScriptError) for answer in answers):
                load_known_scripts(node_client)
                answers = _run_pipeline(node_client, group, wait)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            logger.warning(
                "cluster node %s failed on a batch of %d (%s): sending again", name, len(group), exc
            )
            failed[name] = exc
            for index in positions:
                results[index] = exc
            redo.extend(positions)
            continue
        if wait is not None:
            confirmed = _enough(answers.pop(), wait)
            if replicated is not None:
                for index in positions:
                    replicated[index] = confirmed
        for index, answer in zip(positions, answers, strict=True):
            results[index] = answer
            if isinstance(answer, _REDIRECTED):
                redo.append(index)
    if len(groups) > 1:
        redo.sort()
    return redo


def _refresh_slot_map(client: RedisCluster) -> None:
    """Ask the reachable nodes for the slot map (raises redis.ConnectionError if none answers)."""
    try:
        client.nodes_manager.initialize()
    except RedisClusterException as exc:  # not a RedisError: callers handle "unreachable"
        raise redis.ConnectionError(f"cluster slot map refresh failed: {exc}") from exc


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
