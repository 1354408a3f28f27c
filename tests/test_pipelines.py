"""A batch's round trip (`core.pipelines._run_pipeline`): every command packed into one write, the
answers read through redis-py's own parsing. It must answer exactly as redis-py's pipeline does
(callbacks and their options, errors in place, both decodings, arguments hiredis cannot pack), and a
connection that failed mid-batch must never be handed back with an answer left unread on it.
The cluster's per-node batches go through the same function (tests/test_pipelines_cluster.py)."""

import hashlib
import re
from datetime import timedelta

import pytest
import redis
from django.conf import settings
from redis.backoff import NoBackoff
from redis.cluster import RedisCluster
from redis.commands.core import CoreCommands
from redis.exceptions import NoScriptError
from redis.retry import Retry

from core.caching.scripts import LuaScript
from core.connections import StandaloneRedis
from core.pipelines import Batch

ECHO = LuaScript("pipelines_test_echo", "return {KEYS[1], ARGV[1]}")


def _queue_mix(pipe) -> None:
    """Commands whose answers go through different callbacks, options and error paths."""
    pipe.set("{t}:s", "value", px=60_000)
    pipe.get("{t}:s")
    pipe.get("{t}:missing")
    pipe.incrbyfloat("{t}:f", 1.5)
    pipe.sadd("{t}:set", "a", "b", 3)
    pipe.smembers("{t}:set")
    pipe.hset("{t}:h", mapping={"x": 1, "y": b"two"})
    pipe.hgetall("{t}:h")
    pipe.zadd("{t}:z", {"m": 2.5, "n": 1})
    pipe.zrange("{t}:z", 0, -1, withscores=True)  # a callback that takes an option
    pipe.expire("{t}:set", 100)
    pipe.incr("{t}:s")  # not an integer: an error, in its place
    pipe.xadd("{t}:stream", {"event": bytearray(b"raw")}, maxlen=10, approximate=True)
    pipe.xlen("{t}:stream")
    pipe.set("{t}:mv", memoryview(b"viewed"))  # hiredis refuses it: redis-py's packing
    pipe.get("{t}:mv")


XADD_AT = 12  # the place of the XADD in _queue_mix: its id differs between runs


def _answers(pipe) -> list:
    """The answers, errors as (class, message), the stream id checked for its shape and dropped."""
    out = [
        (type(answer), str(answer)) if isinstance(answer, Exception) else answer
        for answer in pipe.execute(raise_on_error=False)
    ]
    entry_id = out[XADD_AT]
    assert re.fullmatch(rb"\d+-\d+", entry_id if isinstance(entry_id, bytes) else entry_id.encode())
    out[XADD_AT] = "entry id"
    return out


def _own_client(**kwargs) -> redis.Redis:
    """A private plain client of the test's Redis (one server)."""
    return redis.Redis.from_url(settings.REDIS_URL, **kwargs)


def _server_of_t(redis_client, **kwargs) -> redis.Redis:
    """A plain client of the server that holds the keys of slot {t} (on a cluster: its master)."""
    if isinstance(redis_client, RedisCluster):
        node = redis_client.get_node_from_key("{t}")
        return redis.Redis(host=node.host, port=node.port, **kwargs)
    return _own_client(**kwargs)


@pytest.mark.parametrize("decode", [False, True], ids=["bytes", "decoded"])
def test_a_batch_answers_as_redis_pys_pipeline_does(redis_client, decode):
    client = _server_of_t(redis_client, decode_responses=decode)
    ours = Batch(client)
    _queue_mix(ours)
    mine = _answers(ours)
    client.delete(*(f"{{t}}:{k}" for k in ("s", "f", "set", "h", "z", "stream", "mv")))
    theirs = redis.Redis.pipeline(client, transaction=False)
    _queue_mix(theirs)
    assert mine == _answers(theirs)
    assert mine[1] == ("value" if decode else b"value")
    assert mine[11][0] is redis.ResponseError
    assert mine[15] == ("viewed" if decode else b"viewed")


def test_a_two_word_command_and_a_script_go_in_the_batch(redis_client):
    pipe = redis_client.pipeline(transaction=False)
    pipe.execute_command("SCRIPT LOAD", "return 7")
    ECHO(pipe, ["{t}:k"], ["v"])
    sha, echoed = pipe.execute()
    assert sha == hashlib.sha1(b"return 7", usedforsecurity=False).hexdigest()
    assert echoed == [b"{t}:k", b"v"]


def test_an_argument_redis_cannot_take_raises_before_anything_is_sent(redis_client):
    pipe = redis_client.pipeline(transaction=False)
    pipe.set("{t}:before", "x")
    pipe.execute_command("SET", "{t}:k", None)
    with pytest.raises(redis.DataError):
        pipe.execute()
    assert redis_client.exists("{t}:before") == 0


def _batch_killing_its_own_connection(client: redis.Redis) -> Batch:
    """INCR, then QUIT (Redis answers it, then closes the connection without running the rest),
    then GET: the connection fails mid-batch, after answers were read from it."""
    pipe = Batch(client)
    pipe.incr("counted")
    pipe.execute_command("QUIT")
    pipe.get("counted")
    return pipe


@pytest.mark.standalone_only(reason="QUIT on one server")
def test_a_connection_lost_mid_batch_is_sent_again_as_the_clients_retry_says_then_raised(redis_client):
    client = _own_client(retry=Retry(NoBackoff(), 2))
    with pytest.raises(redis.ConnectionError):
        _batch_killing_its_own_connection(client).execute()
    # Three attempts, each on a fresh connection (which is why a batch must be idempotent).
    assert redis_client.get("counted") == b"3"


@pytest.mark.standalone_only(reason="QUIT on one server")
def test_with_no_retry_left_the_error_is_raised_and_the_connection_not_reused():
    client = _own_client(retry=Retry(NoBackoff(), 0))
    with pytest.raises(redis.ConnectionError):
        _batch_killing_its_own_connection(client).execute()
    pipe = Batch(client)
    pipe.get("counted")
    pipe.set("after", "yes")
    assert pipe.execute() == [b"1", True]  # its own answers, on a fresh connection


@pytest.mark.standalone_only(reason="times out one connection of a private client")
def test_a_timeout_mid_batch_never_leaves_its_late_answer_for_the_next_batch(redis_client):
    client = _own_client(socket_timeout=0.3, retry=Retry(NoBackoff(), 0))
    slow = Batch(client)
    slow.set("first", "1")
    slow.blpop(["never-pushed"], timeout=1)  # answers after the socket timeout
    with pytest.raises(redis.TimeoutError):
        slow.execute()
    redis_client.set("second", "2")
    pipe = Batch(client)
    pipe.get("second")
    pipe.get("first")
    # A reused connection would read the late BLPOP answer (nil) as GET second's.
    assert pipe.execute() == [b"2", b"1"]


def _refuse(score) -> float:
    raise ValueError(f"{score!r} is not a score we take")


@pytest.mark.standalone_only(reason="a private client's one connection on one server")
def test_a_callback_that_raises_mid_batch_never_leaves_the_rest_for_the_next_batch():
    client = _own_client()
    failing = Batch(client)
    failing.zadd("z", {"m": 2.5})
    failing.zrange("z", 0, -1, withscores=True, score_cast_func=_refuse)
    failing.set("a", "1")
    with pytest.raises(ValueError, match="not a score we take"):
        failing.execute()
    pipe = Batch(client)
    pipe.get("a")
    assert pipe.execute() == [b"1"]  # a reused connection would answer SET's OK here


def test_a_product_clients_single_command_answers_and_raises_as_redis_py_does(redis_client):
    """StandaloneRedis sends every command as a batch of one (core.pipelines.run_one)."""
    if isinstance(redis_client, RedisCluster):
        redis_client = redis_client.get_redis_connection(redis_client.get_node_from_key("{t}"))
    ours = StandaloneRedis(connection_pool=redis_client.connection_pool)
    theirs = redis.Redis(connection_pool=redis_client.connection_pool)
    ours.set("{t}:n", "not a number")
    for client in (ours, theirs):
        assert client.get("{t}:n") == b"not a number"
        assert client.mget([]) == []  # redis-py's EMPTY_RESPONSE, not an error
        assert client.blpop(["{t}:never"], timeout=0.05) is None
        with pytest.raises(redis.ResponseError, match="not an integer"):
            client.incr("{t}:n")
        with pytest.raises(NoScriptError):
            client.evalsha("0" * 40, 0)


class _Queued(CoreCommands):
    """redis-py's own command methods, recording what they would send."""

    def __init__(self) -> None:
        self.commands: list[tuple] = []

    def execute_command(self, *args, **options):
        self.commands.append((args, options))


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"px": 1500},
        {"ex": 30},
        {"nx": True, "px": 10},
        {"xx": True, "ex": 5},
        {"nx": True},
        {"px": timedelta(milliseconds=250)},  # not an int: redis-py's own set
        {"nx": True, "px": 10, "get": True},  # GET changes the answer's callback: redis-py's
        {"keepttl": True},
    ],
    ids=str,
)
def test_a_batchs_set_queues_what_redis_pys_set_sends(options, redis_client):
    theirs = _Queued()
    theirs.set("{t}:k", "v", **options)
    ours = Batch(redis_client)
    ours.set("{t}:k", "v", **options)
    assert [(list(args), opts) for args, opts in ours.commands] == [
        (list(args), opts) for args, opts in theirs.commands
    ]


def test_a_batchs_set_refuses_what_redis_py_refuses(redis_client):
    for options in ({"ex": 1, "px": 1}, {"nx": True, "xx": True}):
        with pytest.raises(redis.DataError):
            Batch(redis_client).set("{t}:k", "v", **options)
