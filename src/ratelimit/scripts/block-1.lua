-- block-1: block one (limit, subject) state key for a duration, measured on Redis's clock.
-- KEYS[1]  state key
-- ARGV[1]  duration in milliseconds (> 0)
-- returns  blocked-until as Unix milliseconds (Redis time)
-- The block is stored as 'B' .. struct '<d' (until, microseconds): 9 bytes, see check-n.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local untl = now + tonumber(ARGV[1]) * 1000
redis.call('SET', KEYS[1], 'B' .. struct.pack('<d', untl), 'PX', ARGV[1])
return math.floor(untl / 1000)
