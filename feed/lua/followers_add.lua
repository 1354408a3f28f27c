-- A follow.created on an author's follower set: void a fill in flight (its database read may
-- predate the follow) and add the follower to a present, complete set; never create the set.
-- A set that outgrows the inline bound becomes the "large audience" marker (the worker fans out).
-- KEYS[1]: the set, KEYS[2]: its fill lease. ARGV: follower id, complete sentinel, large
-- sentinel, max followers, ttl ms. Returns 1 added, 0 left alone, -1 turned large.
redis.call('DEL', KEYS[2])
if redis.call('SISMEMBER', KEYS[1], ARGV[2]) == 0 then
  return 0
end
redis.call('SADD', KEYS[1], ARGV[1])
if redis.call('SCARD', KEYS[1]) - 1 > tonumber(ARGV[4]) then
  redis.call('DEL', KEYS[1])
  redis.call('SADD', KEYS[1], ARGV[3])
  redis.call('PEXPIRE', KEYS[1], ARGV[5])
  return -1
end
return 1
