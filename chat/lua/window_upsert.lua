-- ARGV: id, version, message JSON, ttl ms, cap, conversation version ('' unknown).
-- Returns 1 stored, 0 ignored (missing key, reflected by the fill, below the window, deleted, not
-- newer), -1 voided (a fill lease, or a window or event without a conversation version).
local sentinel, floor = admit(ARGV[6])
if not sentinel then return floor end
local id, version = tonumber(ARGV[1]), tonumber(ARGV[2])
if id < floor then return 0 end
for _, member in ipairs(redis.call('ZRANGEBYSCORE', key, id, id)) do
  if string.sub(member, 1, 2) == 'x:' then return 0 end
  local ok, decoded = pcall(cjson.decode, member)
  if ok and type(decoded) == 'table' and tonumber(decoded['version'])
      and tonumber(decoded['version']) >= version then
    return 0
  end
end
redis.call('ZREMRANGEBYSCORE', key, id, id)
redis.call('ZADD', key, id, ARGV[3])
trim(sentinel, tonumber(ARGV[5]))
redis.call('PEXPIRE', key, ARGV[4])
return 1
