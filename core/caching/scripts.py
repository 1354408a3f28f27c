"""Lua scripts kept in `.lua` files, loaded by name and run by EVALSHA, on a client or a pipeline.

`LuaScript.load("update_if_newer")` reads `core/caching/lua/update_if_newer.lua`; an app keeps its own
scripts next to its code (`LuaScript.load("upsert", directory=..., prelude=("window",))`). Only the
SHA crosses the wire. Redis forgets scripts on a restart or a SCRIPT FLUSH, so:

- a direct call that gets NOSCRIPT loads the script and runs it again;
- a batch (`core.pipelines.Batch`, what our clients' `pipeline(transaction=False)` returns) that got
  NOSCRIPT back loads every known script and runs once more. That is safe because what we queue is
  idempotent (version compare-and-set, tombstones, fresh tokens): running a batch twice equals once.

Every script touches only the keys it is given, all in one hash slot, so it runs on Redis Cluster.
"""

import hashlib
from collections.abc import Sequence
from pathlib import Path

import redis
from redis.cluster import RedisCluster
from redis.exceptions import NoScriptError

from core.pipelines import Batch, remember_script

LUA_DIR = Path(__file__).resolve().parent / "lua"

# Every script loaded in this process, by SHA: what a batch reloads after NOSCRIPT.
_known: dict[str, "LuaScript"] = {}


class LuaScript:
    """One script: its name, source and SHA. Call it with (client or pipeline, keys, args)."""

    __slots__ = ("name", "sha", "source")

    def __init__(self, name: str, source: str) -> None:
        self.name = name
        self.source = source
        self.sha = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()  # Redis names scripts so
        _known[self.sha] = self
        remember_script(self.sha, source)

    @classmethod
    def load(cls, name: str, directory: Path = LUA_DIR, prelude: Sequence[str] = ()) -> "LuaScript":
        """The script `directory/name.lua`, preceded by the files named in `prelude` (shared Lua
        functions, concatenated in order)."""
        parts = [(directory / f"{part}.lua").read_text() for part in (*prelude, name)]
        return cls(name, "\n".join(parts))

    def __call__(
        self, client: redis.Redis | RedisCluster | Batch, keys: Sequence[str], args: Sequence
    ) -> object:
        """Run on `client`; on a batch the EVALSHA is queued (the result comes from execute, which
        handles NOSCRIPT). On a plain redis-py pipeline it is only queued: NOSCRIPT comes back."""
        if isinstance(client, Batch):
            return client.evalsha(self.sha, len(keys), *keys, *args)
        try:
            return client.evalsha(self.sha, len(keys), *keys, *args)
        except NoScriptError:
            client.script_load(self.source)
            return client.evalsha(self.sha, len(keys), *keys, *args)


def known_scripts() -> list[LuaScript]:
    """Every script this process has loaded (what a batch reloads after NOSCRIPT)."""
    return list(_known.values())


def load_known_scripts(client: redis.Redis | RedisCluster) -> None:
    """SCRIPT LOAD every script this process knows (on a cluster: on every primary)."""
    for script in known_scripts():
        client.script_load(script.source)


# The library's own scripts (core/caching/lua/).
UPDATE_IF_NEWER = LuaScript.load("update_if_newer")
FILL_IF_LEASED = LuaScript.load("fill_if_leased")
RELEASE_IF_HOLDS = LuaScript.load("release_if_holds")
