-- An event's write: update a present, versioned entry only; never create one.
-- KEYS[1]: the key. ARGV: value, its version, ttl ms.
-- Returns 1 updated, 0 left alone (absent, or the same or a newer version there), -1 voided: a lease
-- or a value without a version (a fill in flight, an absent marker) is deleted, so the next reader
-- fills from the database, which already has this event's change.
local current = redis.call('GET', KEYS[1])
if not current then
  return 0
end
local ok, decoded = pcall(cjson.decode, current)
local version = nil
if ok and type(decoded) == 'table' then
  version = tonumber(decoded['version'])
end
if not version then
  redis.call('DEL', KEYS[1])
  return -1
end
if version >= tonumber(ARGV[2]) then
  return 0
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
return 1
