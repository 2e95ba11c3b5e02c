-- check-n: decide K rate limits atomically and charge all of them or none.
-- KEYS[i]  state key of limit i, a string holding one of:
--            sliding window  "<newest sub-window index>:<c0>:...:<c10>", counts of the 11 most
--                            recent sub-windows of W/10 each (c10 newest); the oldest one is
--                            weighted by how much of it still lies inside the window
--            fixed window    "<window index>:0:<count>"
--            GCRA            "<theoretical arrival time, microseconds>"
--            admin block     "B<blocked until, microseconds>"
-- ARGV[1]  "1" = decide and charge, "0" = peek (report only, never write)
-- ARGV[2 + 6*(i-1)] .. for limit i: alg (1 sliding, 2 gcra, 3 fixed), limit, window_ms, burst,
--          cost, shadow ("1" = evaluate and count but never reject)
-- returns  { allowed (1/0), index of the first enforcing limit that rejected (1-based, 0 none),
--            now_ms, then 6 integers per limit: ok (1/0), remaining, reset_ms, retry_ms,
--            retry1_ms, stamp }
--          retry_ms: wait until this cost fits (-1: never, cost > capacity);
--          retry1_ms: until a cost of 1 fits (what the local block cache may use);
--          stamp: window index or new GCRA TAT (us), which refund-n needs to undo a charge.
-- Time is Redis TIME, never the caller's clock.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local charge = ARGV[1] == '1'
local n = #KEYS
local floor, ceil, max = math.floor, math.ceil, math.max

local function to_ms(us)
  if us < 0 then return -1 end
  return ceil(us / 1000)
end

-- Sliding window over B sub-windows: the error of assuming uniform arrivals is confined to one
-- sub-window of W/B instead of a whole window.
local B = 10

local function sub_state(raw, j)
  local counts = {}
  for k = 0, B do counts[k] = 0 end
  if raw then
    local parts = {}
    for v in string.gmatch(raw, '[^:]+') do parts[#parts + 1] = tonumber(v) end
    local sj = parts[1]
    if sj and #parts == B + 2 then
      local shift = j - sj
      if shift >= 0 and shift <= B then
        for k = 0, B - shift do counts[k] = parts[2 + k + shift] or 0 end
      end
    end
  end
  return counts
end

-- offset (us) from now until est + c <= L, walking sub-window boundaries forward; -1 if never
local function sub_retry(counts, L, S, frac, c)
  if c > L then return -1 end
  local newer = 0
  for k = 1, B do newer = newer + counts[k] end
  for k = 0, B do
    local R = L - c - newer
    if R >= 0 then
      local ck = counts[k]
      local f
      if ck <= R then f = 0 else f = 1 - R / ck end
      local start = k
      if k == 0 then start = frac end
      local at = math.max(start, k + f)
      return math.max(0, (at - frac) * S)
    end
    if k < B then newer = newer - counts[k + 1] end
  end
  return (B + 1 - frac) * S
end

local results = {}
local writes = {}
local allowed = 1
local rejected = 0

for i = 1, n do
  local b = 2 + 6 * (i - 1)
  local alg = tonumber(ARGV[b])
  local L = tonumber(ARGV[b + 1])
  local Wms = tonumber(ARGV[b + 2])
  local W = Wms * 1000
  local burst = tonumber(ARGV[b + 3])
  local c = tonumber(ARGV[b + 4])
  local shadow = ARGV[b + 5] == '1'
  local raw = redis.call('GET', KEYS[i])
  local ok, remaining, reset, retry, retry1, stamp

  if raw and string.sub(raw, 1, 1) == 'B' then
    local untl = tonumber(string.sub(raw, 2)) or 0
    if untl > now then
      ok, remaining, reset, retry, retry1, stamp = 0, 0, untl - now, untl - now, untl - now, 0
    else
      raw = nil
    end
  end

  if ok == nil then
    if alg == 2 then
      local T = W / L
      local tat = now
      if raw then tat = max(tonumber(raw) or now, now) end
      local new_tat = tat + c * T
      if c > burst then
        ok, retry = 0, -1
      elseif new_tat - burst * T <= now then
        ok, retry = 1, 0
      else
        ok, retry = 0, new_tat - burst * T - now
      end
      retry1 = max(0, tat + T - burst * T - now)
      if ok == 1 then
        remaining = floor((now - (new_tat - burst * T)) / T)
        reset = new_tat - now
        stamp = ceil(new_tat)
        writes[i] = { string.format('%.0f', stamp), max(1, ceil((new_tat - now) / 1000)) }
      else
        remaining = max(0, floor((now - (tat - burst * T)) / T))
        reset = tat - now
        stamp = 0
      end
    elseif alg == 1 then
      local S = W / B
      local j = floor(now / S)
      local frac = (now - j * S) / S
      local counts = sub_state(raw, j)
      local est = counts[0] * (1 - frac)
      for k = 1, B do est = est + counts[k] end
      if est + c <= L then ok = 1 else ok = 0 end
      retry = sub_retry(counts, L, S, frac, c)
      retry1 = sub_retry(counts, L, S, frac, 1)
      stamp = j
      if ok == 1 then
        counts[B] = counts[B] + c
        remaining = max(0, floor(L - est - c))
        local parts = { string.format('%.0f', j) }
        for k = 0, B do parts[#parts + 1] = string.format('%.0f', counts[k]) end
        writes[i] = { table.concat(parts, ':'), Wms + ceil(S / 1000) }
      else
        remaining = max(0, floor(L - est))
      end
      -- until every request now counted has left the window
      local newest = -1
      for k = 0, B do if counts[k] > 0 then newest = k end end
      if newest < 0 then reset = 0 else reset = (newest + 1 - frac) * S end
    else
      local w = floor(now / W)
      local cur = 0
      if raw then
        local sw, sc = string.match(raw, '^(%d+):0:(%d+)$')
        if sw and tonumber(sw) == w then cur = tonumber(sc) end
      end
      local elapsed = now - w * W
      if cur + c <= L then ok = 1 else ok = 0 end
      if c > L then retry = -1 elseif ok == 1 then retry = 0 else retry = W - elapsed end
      if cur + 1 <= L then retry1 = 0 else retry1 = W - elapsed end
      reset = W - elapsed
      stamp = w
      if ok == 1 then
        remaining = max(0, L - cur - c)
        writes[i] = { string.format('%.0f:0:%.0f', w, cur + c), max(1, ceil((W - elapsed) / 1000)) }
      else
        remaining = max(0, L - cur)
      end
    end
  end

  if ok == 0 and not shadow and allowed == 1 then
    allowed = 0
    rejected = i
  end
  results[i] = { ok, remaining, to_ms(reset), to_ms(retry), to_ms(retry1), stamp }
end

if charge and allowed == 1 then
  for i = 1, n do
    local wr = writes[i]
    if wr then redis.call('SET', KEYS[i], wr[1], 'PX', wr[2]) end
  end
end

local out = { allowed, rejected, floor(now / 1000) }
for i = 1, n do
  local r = results[i]
  for j = 1, 6 do out[#out + 1] = r[j] end
end
return out
