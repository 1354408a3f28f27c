-- A post's inline fan-out inside its commit-time pipeline, on one Redis: when the author's follower
-- set is present, complete and within the inline bound, each follower's feed gets the fresh stamp.
-- The followers' stamp keys are built here, not declared: one server only (a cluster refuses keys
-- of other slots; there the set is read first, in its own round trip: feed/handlers.py).
-- KEYS[1]: the set. ARGV: complete sentinel, max followers, stamp, stamp ttl ms, and the prefix and
-- suffix of a stamp key around the user id. Returns the feeds stamped, or -1 when the set is
-- absent, large or incomplete (the worker's fan-out stamps them).
local members = redis.call('SMEMBERS', KEYS[1])
local complete = false
for _, member in ipairs(members) do
  if member == ARGV[1] then
    complete = true
  end
end
if not complete or #members - 1 > tonumber(ARGV[2]) then
  return -1
end
for _, member in ipairs(members) do
  if member ~= ARGV[1] then
    redis.call('SET', ARGV[5] .. member .. ARGV[6], ARGV[3], 'PX', ARGV[4])
  end
end
return #members - 1
