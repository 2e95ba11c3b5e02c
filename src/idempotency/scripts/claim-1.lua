-- claim-1.lua: claim an idempotency key for one request, or report what holds it.
-- The fingerprint is compared before the lease, so another payload is a mismatch even in flight.
-- Time comes from the server (TIME), never from an instance clock.
--
-- KEYS[1]  the record of one scoped key (a hash: s=state i|d, f=fingerprint, t=token, e=lease end ms, r=response)
-- ARGV[1]  request fingerprint
-- ARGV[2]  owner token (random per attempt)
-- ARGV[3]  lease in ms
-- ARGV[4]  retention in ms (record TTL)
-- Returns  {0, takeover}      claimed; takeover = 1 when an expired owner's lease was taken over
--          {1, response}      done; response is the encoded result, '' when it was not kept
--          {2}                same key, different fingerprint
--          {3, remaining_ms}  in flight under a live lease
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lease = tonumber(ARGV[3])
local rec = redis.call('HMGET', KEYS[1], 's', 'f', 'e', 'r')
if not rec[1] then
  redis.call('HSET', KEYS[1], 's', 'i', 'f', ARGV[1], 't', ARGV[2], 'e', now + lease)
  redis.call('PEXPIRE', KEYS[1], ARGV[4])
  return {0, 0}
end
if rec[2] ~= ARGV[1] then
  return {2}
end
if rec[1] == 'd' then
  return {1, rec[4] or ''}
end
local left = tonumber(rec[3]) - now
if left > 0 then
  return {3, left}
end
redis.call('HSET', KEYS[1], 't', ARGV[2], 'e', now + lease)
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return {0, 1}
