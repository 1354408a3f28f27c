"""Lua scripts from `.lua` files, run by EVALSHA: only the SHA crosses the wire, and a Redis that
forgot the scripts (a restart, SCRIPT FLUSH) gets them loaded again, on a pipeline too. Also: no
module outside core/caching uses a private name of the library."""

import ast
from pathlib import Path

import redis
from redis.cluster import RedisCluster

from chat import events as chat_events
from chat.cache import ConversationMessagesCache
from chat.handlers import MessageHandler
from core.caching import CacheAsideStrategy, LuaScript, WriteThroughCacheStrategy
from core.caching.scripts import UPDATE_IF_NEWER
from tests.test_caching_strategies import recorder_for

ROOT = Path(__file__).resolve().parent.parent


class Rows(CacheAsideStrategy, WriteThroughCacheStrategy):
    namespace = "scripts"
    default_ttl = 60


def test_scripts_are_loaded_by_name_from_lua_files():
    assert UPDATE_IF_NEWER.name == "update_if_newer"
    assert UPDATE_IF_NEWER.source == (ROOT / "core/caching/lua/update_if_newer.lua").read_text()
    script = LuaScript.load("window_upsert", directory=ROOT / "chat/lua", prelude=("window",))
    assert script.source.startswith((ROOT / "chat/lua/window.lua").read_text())


def test_a_pipeline_sends_evalsha_not_the_source(redis_client):
    rows = Rows()
    recorder = recorder_for(redis_client)
    rows.set(rows.key("a"), {"version": 0})  # present: events update present entries only
    pipe = recorder.pipeline(transaction=False)
    rows.queue_update_if_newer(pipe, rows.key("a"), {"version": 1})
    assert pipe.execute() == [1]
    assert [args[0] for args in recorder.commands] == ["EVALSHA"]
    assert recorder.commands[0][1] == UPDATE_IF_NEWER.sha


def test_a_direct_call_reloads_a_flushed_script(redis_client):
    rows = Rows()
    rows.set(rows.key("b"), {"version": 1})
    redis_client.script_flush()
    assert rows.update_if_newer(rows.key("b"), {"version": 2}) == 1
    assert rows.get(rows.key("b")) == {"version": 2}


def test_a_pipeline_after_script_flush_loads_the_scripts_and_runs_once_more(redis_client):
    rows = Rows()
    rows.set_many({rows.key("c"): {"version": 2}, rows.key("d"): {"version": 1}})
    redis_client.script_flush()
    pipe = redis_client.pipeline(transaction=False)
    pipe.set(rows.key("plain"), b"1", px=60_000)
    rows.queue_update_if_newer(pipe, rows.key("c"), {"version": 3})
    rows.queue_tombstone(pipe, rows.key("d"))
    assert pipe.execute(raise_on_error=False) == [True, 1, 1]
    assert rows.get(rows.key("c")) == {"version": 3}
    for key in (rows.key("c"), rows.key("d")):  # loaded where the batch ran (a cluster: each key's node)
        assert server_of(redis_client, key).script_exists(UPDATE_IF_NEWER.sha) == [True]


def server_of(client: redis.Redis | RedisCluster, key: str) -> redis.Redis:
    """The server holding `key`: the client itself, or on a cluster the primary owning its slot."""
    if isinstance(client, RedisCluster):
        return client.get_redis_connection(client.get_node_from_key(key))
    return client


def test_a_raising_pipeline_after_script_flush_also_recovers(redis_client):
    rows = Rows()
    rows.set(rows.key("e"), {"version": 0})
    redis_client.script_flush()
    pipe = redis_client.pipeline(transaction=False)
    rows.queue_update_if_newer(pipe, rows.key("e"), {"version": 1})
    assert pipe.execute() == [1]


def test_event_handlers_apply_after_script_flush(redis_client):
    """The consumer's pipeline: a chat window written by an event right after Redis lost its scripts."""
    cache = ConversationMessagesCache(loader=lambda conversation_id, limit: [])
    assert cache.get_messages(9) == []  # filled (empty window, floor 0)
    redis_client.script_flush()
    message = {
        "id": 1,
        "conversation_id": 9,
        "sender_id": 1,
        "sender": "ann",
        "body": "hi",
        "created_at": "2026-11-25T05:00:00.000001Z",
        "edited_at": None,
        "version": 1,
    }
    pipe = redis_client.pipeline(transaction=False)
    MessageHandler().apply(pipe, chat_events.message_created(message, conversation_version=1))
    assert pipe.execute(raise_on_error=False) == [1]
    assert [m["id"] for m in cache.get_messages(9)] == [1]


def _library_private_attributes() -> set[str]:
    """Private (single underscore) attributes of every class the library exports."""
    import core.caching

    names = set()
    for exported in core.caching.__all__:
        value = getattr(core.caching, exported)
        for cls in (value if isinstance(value, type) else type(value)).__mro__:
            if cls.__module__.startswith("core.caching"):
                names |= {n for n in vars(cls) if n.startswith("_") and not n.startswith("__")}
                names |= {n for n in getattr(cls, "__slots__", ()) if n.startswith("_")}
    return names


def _private_caching_names(path: Path, private: set[str]) -> list[str]:
    """Imports of `_x` from core.caching, dotted "core.caching...._x" strings (monkeypatch targets),
    and `obj._x` for a private attribute of the library that this file does not define itself."""
    tree = ast.parse(path.read_text())
    defined = {n.name for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
    defined |= {
        t.attr
        for n in ast.walk(tree)
        if isinstance(n, (ast.Assign, ast.AnnAssign))
        for t in (n.targets if isinstance(n, ast.Assign) else [n.target])
        if isinstance(t, ast.Attribute)
    }
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("core.caching"):
            found += [f"{node.module}.{a.name}" for a in node.names if a.name.startswith("_")]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            if node.value.startswith("core.caching.") and "._" in node.value:
                found.append(node.value)
        elif isinstance(node, ast.Attribute) and node.attr in private and node.attr not in defined:
            found.append(f"line {node.lineno}: .{node.attr}")
    return found


def test_nothing_outside_the_caching_library_uses_its_private_names():
    private = _library_private_attributes() | {
        "_call",
        "_count",
        "_decode",
        "_builder",
        "_MISSING",
        "_take_lease",
    }
    offenders = {}
    for path in ROOT.rglob("*.py"):
        relative = path.relative_to(ROOT)
        if relative.parts[0] in {".venv", ".run", "node_modules"} or relative.parts[:2] == (
            "core",
            "caching",
        ):
            continue
        if relative == Path("tests/test_caching_scripts.py"):
            continue
        names = _private_caching_names(path, private)
        if names:
            offenders[str(relative)] = names
    assert offenders == {}
