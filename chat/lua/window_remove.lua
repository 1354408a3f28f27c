-- ARGV: id, ttl ms, cap. Returns 1 tombstoned, 0 ignored, -1 lease voided.
local sentinel, floor = guard()
if not sentinel then return floor end
local id = tonumber(ARGV[1])
if id < floor then return 0 end
redis.call('ZREMRANGEBYSCORE', key, id, id)
redis.call('ZADD', key, id, 'x:' .. ARGV[1])
trim(sentinel, tonumber(ARGV[3]))
redis.call('PEXPIRE', key, ARGV[2])
return 1
