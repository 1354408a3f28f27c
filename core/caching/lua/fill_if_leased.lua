-- Fill a key only while our lease is still in it: any write or delete since we took it wins.
-- KEYS[1]: the key. ARGV: lease token, value, ttl ms. Returns 1 filled, 0 dropped.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0
