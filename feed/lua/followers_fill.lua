-- Store an author's follower set read from the database, only while our lease is still there: a
-- follow event since we took it deleted the lease (the read may predate it), and then nothing is
-- stored. The lease is released either way.
-- KEYS[1]: the set, KEYS[2]: its fill lease. ARGV: token, ttl ms, members... (the followers and
-- the complete sentinel, or the large sentinel alone). Returns 1 stored, 0 dropped.
if redis.call('GET', KEYS[2]) ~= ARGV[1] then
  return 0
end
redis.call('DEL', KEYS[2])
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
redis.call('SADD', KEYS[1], unpack(ARGV, 3))
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
