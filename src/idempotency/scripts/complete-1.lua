-- complete-1.lua: finish an in-flight record, but only for the token that owns it (compare-and-set),
-- so an owner whose lease was taken over can never overwrite the new owner's result.
--
-- KEYS[1]  the record of one scoped key
-- ARGV[1]  owner token
-- ARGV[2]  'store' to keep the result, 'release' to delete the record (the key may be retried)
-- ARGV[3]  encoded response ('' = finished but not replayable); ignored for 'release'
-- ARGV[4]  retention in ms, counted from now
-- Returns  1 when written, 0 when the token no longer owns an in-flight record
local rec = redis.call('HMGET', KEYS[1], 's', 't')
if rec[1] ~= 'i' or rec[2] ~= ARGV[1] then
  return 0
end
if ARGV[2] == 'release' then
  redis.call('DEL', KEYS[1])
  return 1
end
redis.call('HSET', KEYS[1], 's', 'd', 'r', ARGV[3])
redis.call('HDEL', KEYS[1], 't', 'e')
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return 1
