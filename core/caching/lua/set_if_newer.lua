-- Compare-and-set on a JSON value's top-level "version".
-- KEYS[1]: the key. ARGV: value, its version, ttl ms. Returns 1 stored, 0 kept (same or newer there).
-- A lease or any unversioned value is overwritten, which also voids a cache-aside fill in flight.
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
