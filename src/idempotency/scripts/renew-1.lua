-- renew-1.lua: extend the lease of an in-flight record while its owner's handler still runs.
--
-- KEYS[1]  the record of one scoped key
-- ARGV[1]  owner token
-- ARGV[2]  lease in ms, counted from the server's now
-- Returns  1 when renewed, 0 when the token no longer owns an in-flight record
local rec = redis.call('HMGET', KEYS[1], 's', 't')
if rec[1] ~= 'i' or rec[2] ~= ARGV[1] then
  return 0
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HSET', KEYS[1], 'e', now + tonumber(ARGV[2]))
return 1
