-- Compare-and-delete: drop KEYS[1] only while it still holds ARGV[1] (our lease token, or bytes we
-- read and judged corrupt). Returns 1 deleted, 0 left alone (someone else's value now).
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
