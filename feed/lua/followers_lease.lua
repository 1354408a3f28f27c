-- Take the fill lease of an author's follower set, only while the set is absent (a present one is
-- kept up to date by follow events and needs no fill). Taken before the database read.
-- KEYS[1]: the set, KEYS[2]: its fill lease. ARGV: token, lease ttl ms. Returns 1 taken, else 0.
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return 1
end
return 0
