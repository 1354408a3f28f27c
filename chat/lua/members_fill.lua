-- Fill a conversation's member set only while our lease is still in its key: a delete since we
-- took it (a participant removed: chat/handlers.py) wins, since our read may predate the removal.
-- KEYS[1]: the set. ARGV: lease token, ttl ms, then the member ids. Returns 1 filled, 0 dropped.
local key = KEYS[1]
if redis.call('TYPE', key)['ok'] ~= 'string' or redis.call('GET', key) ~= ARGV[1] then
  return 0
end
redis.call('DEL', key)
redis.call('SADD', key, '~', unpack(ARGV, 3))
redis.call('PEXPIRE', key, ARGV[2])
return 1
