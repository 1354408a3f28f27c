-- A sliding-window log of one user's chat frames, in one round trip (what ninja's SimpleRateThrottle
-- does with a GET and a SET of the whole history). KEYS[1]: a sorted set of send times (ms).
-- ARGV: now (ms), window (ms), limit, a unique member. Returns 0 (counted, allowed) or the ms until
-- the oldest counted frame leaves the window (refused, not counted).
local key = KEYS[1]
local now, window, limit = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
if redis.call('ZCARD', key) >= limit then
  local oldest = tonumber(redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')[2])
  return math.max(1, oldest + window - now)
end
redis.call('ZADD', key, now, ARGV[4])
redis.call('PEXPIRE', key, window)
return 0
