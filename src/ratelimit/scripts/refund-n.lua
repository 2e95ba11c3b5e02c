-- refund-n: undo charges made by check-n on one node when another node of a Redis Cluster
-- rejected the same decision (charge-then-refund keeps multi-slot decisions all-or-nothing).
-- KEYS[i]  state key of limit i (same as check-n)
-- ARGV[1 + 5*(i-1)] .. for limit i: alg (1 sliding, 2 gcra, 3 fixed), limit, window_ms, cost,
--          stamp (the window index or GCRA TAT that check-n returned)
-- returns  number of keys changed
local changed = 0
for i = 1, #KEYS do
  local b = 1 + 5 * (i - 1)
  local alg = tonumber(ARGV[b])
  local L = tonumber(ARGV[b + 1])
  local Wms = tonumber(ARGV[b + 2])
  local c = tonumber(ARGV[b + 3])
  local stamp = tonumber(ARGV[b + 4])
  local raw = redis.call('GET', KEYS[i])
  if raw and string.sub(raw, 1, 1) ~= 'B' then
    if alg == 2 then
      local tat = (tonumber(raw) or 0) - c * (Wms * 1000 / L)
      local t = redis.call('TIME')
      local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
      if tat <= now then
        redis.call('DEL', KEYS[i])
      else
        redis.call('SET', KEYS[i], string.format('%.0f', math.ceil(tat)), 'PX', math.max(1, math.ceil((tat - now) / 1000)))
      end
      changed = changed + 1
    elseif alg == 1 then
      local parts = {}
      for v in string.gmatch(raw, '[^:]+') do parts[#parts + 1] = tonumber(v) end
      local idx = 10 - (parts[1] - stamp)
      if #parts == 12 and idx >= 0 and idx <= 10 then
        parts[2 + idx] = math.max(0, parts[2 + idx] - c)
        for k = 1, #parts do parts[k] = string.format('%.0f', parts[k]) end
        redis.call('SET', KEYS[i], table.concat(parts, ':'), 'KEEPTTL')
        changed = changed + 1
      end
    else
      local sw, sc = string.match(raw, '^(%d+):0:(%d+)$')
      if sw and tonumber(sw) == stamp then
        redis.call('SET', KEYS[i], string.format('%.0f:0:%.0f', stamp, math.max(0, tonumber(sc) - c)), 'KEEPTTL')
        changed = changed + 1
      end
    end
  end
end
return changed
