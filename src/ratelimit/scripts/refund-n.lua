-- refund-n: undo charges made by check-n on one node when another node of a Redis Cluster
-- rejected the same decision (charge-then-refund keeps multi-slot decisions all-or-nothing).
-- KEYS[i]  state key of limit i (binary layouts as in check-n)
-- ARGV[1 + 5*(i-1)] .. for limit i: alg (1 sliding, 2 gcra, 3 fixed), limit, window_ms, cost,
--          stamp (the sub-window/window index or GCRA TAT that check-n returned)
-- returns  number of keys changed
local pack, unpack = struct.pack, struct.unpack
local SLIDING = '<dI4I4I4I4I4I4I4I4I4I4I4I4'
local SLIDING52 = '<dI4I4I4I4I4I4I4I4I4I4I4'
local changed = 0
for i = 1, #KEYS do
  local b = 1 + 5 * (i - 1)
  local alg = tonumber(ARGV[b])
  local L = tonumber(ARGV[b + 1])
  local Wms = tonumber(ARGV[b + 2])
  local c = tonumber(ARGV[b + 3])
  local stamp = tonumber(ARGV[b + 4])
  local raw = redis.call('GET', KEYS[i])
  if raw then
    if alg == 2 and #raw == 8 then
      local t = redis.call('TIME')
      local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
      local tat = unpack('<d', raw) - c * (Wms * 1000 / L)
      if tat <= now then
        redis.call('DEL', KEYS[i])
      else
        redis.call('SET', KEYS[i], pack('<d', math.ceil(tat)), 'KEEPTTL')
      end
      changed = changed + 1
    elseif alg == 1 and #raw == 56 then
      -- v[1] sub-window index, v[2] oldest count, v[3] sum of the newer ten, v[4] newest, v[5..13]
      -- the nine between (see check-n)
      local v = { unpack(SLIDING, raw) }
      local idx = 10 - (v[1] - stamp)
      if idx >= 0 and idx <= 10 then
        local at = 4 + idx
        if idx == 0 then at = 2 elseif idx == 10 then at = 4 end
        local take = math.min(c, v[at])
        v[at] = v[at] - take
        if idx > 0 then v[3] = v[3] - take end
        redis.call('SET', KEYS[i], pack(SLIDING, v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8], v[9], v[10], v[11], v[12], v[13]), 'KEEPTTL')
        changed = changed + 1
      end
    elseif alg == 1 and #raw == 52 then
      -- the earlier layout: the 11 counts oldest first, no sum
      local v = { unpack(SLIDING52, raw) }
      local idx = 10 - (v[1] - stamp)
      if idx >= 0 and idx <= 10 then
        v[2 + idx] = math.max(0, v[2 + idx] - c)
        redis.call('SET', KEYS[i], pack(SLIDING52, v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8], v[9], v[10], v[11], v[12]), 'KEEPTTL')
        changed = changed + 1
      end
    elseif alg == 3 and #raw == 12 then
      local sw, sc = unpack('<dI4', raw)
      if sw == stamp then
        redis.call('SET', KEYS[i], pack('<dI4', sw, math.max(0, sc - c)), 'KEEPTTL')
        changed = changed + 1
      end
    end
  end
end
return changed
