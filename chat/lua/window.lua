-- Shared by the window scripts (loaded before each of them): KEYS[1] is a conversation's window.
local key = KEYS[1]
local function guard()
  local kind = redis.call('TYPE', key)['ok']
  if kind == 'none' then return nil, 0 end
  local sentinel = kind == 'zset' and redis.call('ZRANGEBYSCORE', key, 0, 0)[1]
  if not sentinel or string.sub(sentinel, 1, 1) ~= '~' then
    -- a fill lease (or a value that is not ours): void it, the next reader fills from the database
    redis.call('DEL', key)
    return nil, -1
  end
  return sentinel, tonumber(string.sub(sentinel, 2))
end

local function trim(sentinel, cap)
  -- rank 0 is the sentinel (score 0); every message and tombstone scores its id (>= 1)
  local count = redis.call('ZCARD', key) - 1
  if count > cap then
    redis.call('ZREMRANGEBYRANK', key, 1, count - cap)
    local floor = tonumber(redis.call('ZRANGE', key, 1, 1, 'WITHSCORES')[2])
    redis.call('ZREM', key, sentinel)
    redis.call('ZADD', key, 0, string.format('~%d', floor))
  end
end
