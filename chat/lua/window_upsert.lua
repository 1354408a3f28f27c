-- ARGV: id, version, message JSON, ttl ms, cap.
-- Returns 1 stored, 0 ignored (missing key, below the window, deleted, not newer), -1 lease voided.
local sentinel, floor = guard()
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
