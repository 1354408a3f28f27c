-- ARGV: lease, ttl ms, "<id floor>:<version floor>", then id, JSON pairs. Fills only while our lease
-- is still the value.
local key = KEYS[1]
if redis.call('TYPE', key)['ok'] ~= 'string' or redis.call('GET', key) ~= ARGV[1] then
  return 0
end
redis.call('DEL', key)
local members = {0, '~' .. ARGV[3]}
for i = 4, #ARGV do members[#members + 1] = ARGV[i] end
redis.call('ZADD', key, unpack(members))
redis.call('PEXPIRE', key, ARGV[2])
return 1
