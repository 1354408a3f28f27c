-- Shared by the window scripts (loaded before each of them): KEYS[1] is a conversation's window.
-- Its sentinel (score 0) is '~<id floor>:<version floor>': the window accounts for every message
-- whose id is >= the id floor, as of the conversation's version <= the version floor.
local key = KEYS[1]

-- The sentinel and its two floors, or nil and 0 (no window) / -1 (a fill lease or a window without
-- a version floor, voided: the next reader fills from the database).
local function guard()
  local kind = redis.call('TYPE', key)['ok']
  if kind == 'none' then return nil, 0 end
  local sentinel = kind == 'zset' and redis.call('ZRANGEBYSCORE', key, 0, 0)[1]
  local ids, version
  if sentinel then ids, version = string.match(sentinel, '^~(%d+):(%d+)$') end
  if not version then
    redis.call('DEL', key)
    return nil, -1
  end
  return sentinel, tonumber(ids), tonumber(version)
end

-- What every event checks first: the window, and whether the event is newer than its fill.
-- An event with no conversation version ('' in ARGV) cannot be placed: it voids the window.
local function admit(event_version)
  local sentinel, floor, version_floor = guard()
  if not sentinel then return nil, floor end
  if event_version == '' then
    redis.call('DEL', key)
    return nil, -1
  end
  if tonumber(event_version) <= version_floor then return nil, 0 end  -- the fill reflects it
  return sentinel, floor
end

local function trim(sentinel, cap)
  -- rank 0 is the sentinel (score 0); every message and tombstone scores its id (>= 1)
  local count = redis.call('ZCARD', key) - 1
  if count > cap then
    redis.call('ZREMRANGEBYRANK', key, 1, count - cap)
    local floor = tonumber(redis.call('ZRANGE', key, 1, 1, 'WITHSCORES')[2])
    local version_floor = string.match(sentinel, ':(%d+)$')
    redis.call('ZREM', key, sentinel)
    redis.call('ZADD', key, 0, string.format('~%d:%s', floor, version_floor))
  end
end
