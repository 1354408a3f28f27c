"""Lua scripts, run on any client or pipeline.

Every script touches only the keys it is given, all in one hash slot, so it runs on Redis Cluster.
"""

import redis
from redis.client import Pipeline
from redis.commands.core import Script


class LuaScript:
    def __init__(self, source: str) -> None:
        self.source = source
        self._script: Script | None = None

    def __call__(self, client: redis.Redis, keys: list[str], args: list) -> object:
        """Run on `client`. On a pipeline the call is queued as EVAL of the source: Redis caches the
        compiled script by its SHA anyway, and redis-py's EVALSHA path would add a SCRIPT EXISTS
        round trip before every pipeline (and fail after a Redis restart flushed the scripts).
        A direct call uses EVALSHA, loading the script on NOSCRIPT."""
        if isinstance(client, Pipeline):
            return client.eval(self.source, len(keys), *keys, *args)
        if self._script is None:
            self._script = Script(client, self.source)
        return self._script(keys=keys, args=args, client=client)


# Compare-and-set on a JSON value's top-level "version". A lease or any unversioned value is
# overwritten, which also voids a cache-aside fill in flight (its lease is gone).
SET_IF_NEWER = LuaScript("""
local current = redis.call('GET', KEYS[1])
if current then
  local ok, decoded = pcall(cjson.decode, current)
  if ok and type(decoded) == 'table' then
    local version = tonumber(decoded['version'])
    if version and version >= tonumber(ARGV[2]) then
      return 0
    end
  end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
return 1
""")

# Fill a key only while our lease is still in it: any write or delete since we took it wins.
FILL_IF_LEASED = LuaScript("""
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0
""")

RELEASE_LEASE = LuaScript("""
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
""")
