-- block-1: block one (limit, subject) state key for a duration, measured on Redis's clock.
-- KEYS[1]  state key
-- ARGV[1]  duration in milliseconds (> 0)
-- returns  blocked-until as Unix milliseconds (Redis time)
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local d = tonumber(ARGV[1])
local untl = now + d * 1000
redis.call('SET', KEYS[1], 'B' .. string.format('%.0f', untl), 'PX', d)
return math.floor(untl / 1000)
