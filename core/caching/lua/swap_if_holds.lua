-- Compare-and-swap keeping the TTL: replace KEYS[1]'s value by ARGV[2] only while it still holds
-- exactly ARGV[1] (a stale-while-revalidate claim, or its release). Returns 1 swapped, 0 left alone.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'KEEPTTL')
  return 1
end
return 0
