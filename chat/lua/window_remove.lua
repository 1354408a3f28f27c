-- ARGV: id, ttl ms, cap, conversation version ('' unknown).
-- Returns 1 tombstoned, 0 ignored (missing key, reflected by the fill, below the window), -1 voided.
local sentinel, floor = admit(ARGV[4])
if not sentinel then return floor end
local id = tonumber(ARGV[1])
if id < floor then return 0 end
redis.call('ZREMRANGEBYSCORE', key, id, id)
redis.call('ZADD', key, id, 'x:' .. ARGV[1])
trim(sentinel, tonumber(ARGV[3]))
redis.call('PEXPIRE', key, ARGV[2])
return 1
