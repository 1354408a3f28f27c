"""Lua scripts kept in `.lua` files, loaded by name and run by EVALSHA, on a client or a pipeline.

`LuaScript.load("update_if_newer")` reads `core/caching/lua/update_if_newer.lua`; an app keeps its own
scripts next to its code (`LuaScript.load("upsert", directory=..., prelude=("window",))`). Only the
SHA crosses the wire. Redis forgets scripts on a restart or a SCRIPT FLUSH, so:

- a direct call that gets NOSCRIPT loads the script and runs it again;
- a pipeline that queued one of our scripts and gets NOSCRIPT back loads every known script and runs
  the whole pipeline once more. That is safe because what we queue is idempotent (version
  compare-and-set, tombstones, fresh tokens): running a batch twice equals running it once.

Every script touches only the keys it is given, all in one hash slot, so it runs on Redis Cluster.
"""

import hashlib
from collections.abc import Sequence
from pathlib import Path

import redis
from redis.client import Pipeline
from redis.exceptions import NoScriptError

LUA_DIR = Path(__file__).resolve().parent / "lua"

# Every script loaded in this process, by SHA: what a pipeline reloads after NOSCRIPT.
_known: dict[str, "LuaScript"] = {}
# Marks a pipeline whose execute() already retries on NOSCRIPT (set on the pipeline object).
_RETRYING = "_themoon_noscript_retry"


class LuaScript:
    """One script: its name, source and SHA. Call it with (client or pipeline, keys, args)."""

    __slots__ = ("name", "sha", "source")

    def __init__(self, name: str, source: str) -> None:
        self.name = name
        self.source = source
        self.sha = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()  # Redis names scripts so
        _known[self.sha] = self

    @classmethod
    def load(cls, name: str, directory: Path = LUA_DIR, prelude: Sequence[str] = ()) -> "LuaScript":
        """The script `directory/name.lua`, preceded by the files named in `prelude` (shared Lua
        functions, concatenated in order)."""
        parts = [(directory / f"{part}.lua").read_text() for part in (*prelude, name)]
        return cls(name, "\n".join(parts))

    def __call__(self, client: redis.Redis | Pipeline, keys: Sequence[str], args: Sequence) -> object:
        """Run on `client`; on a pipeline the EVALSHA is queued (the result comes from execute)."""
        if isinstance(client, Pipeline):
            if not getattr(client, _RETRYING, False):
                _retry_on_noscript(client)
            return client.evalsha(self.sha, len(keys), *keys, *args)
        try:
            return client.evalsha(self.sha, len(keys), *keys, *args)
        except NoScriptError:
            client.script_load(self.source)
            return client.evalsha(self.sha, len(keys), *keys, *args)


def load_known_scripts(client: redis.Redis | Pipeline) -> None:
    """SCRIPT LOAD every script this process knows (queued, on a pipeline)."""
    for script in list(_known.values()):
        client.script_load(script.source)


def _retry_on_noscript(pipe: Pipeline) -> None:
    """Make `pipe.execute` load the scripts and run the pipeline once more if Redis answered NOSCRIPT
    (whichever `raise_on_error` the caller passes; the caller sees only the second run)."""
    execute = pipe.execute

    def execute_with_scripts(raise_on_error: bool = True) -> list:
        stack = list(pipe.command_stack)
        try:
            results = execute(raise_on_error)
        except NoScriptError:
            pass
        else:
            if not any(isinstance(result, NoScriptError) for result in results):
                return results
        load_known_scripts(pipe)
        execute(True)
        pipe.command_stack.extend(stack)
        return execute(raise_on_error)

    pipe.execute = execute_with_scripts
    setattr(pipe, _RETRYING, True)


# The library's own scripts (core/caching/lua/).
UPDATE_IF_NEWER = LuaScript.load("update_if_newer")
FILL_IF_LEASED = LuaScript.load("fill_if_leased")
RELEASE_IF_HOLDS = LuaScript.load("release_if_holds")
