-- check-n: decide K rate limits atomically and charge all of them or none.
-- KEYS[i]  state key of limit i: a binary string (struct-packed, little-endian; number-to-text
--          conversion costs about a microsecond per value inside Redis, packing is near free):
--            GCRA            8 bytes   <d   theoretical arrival time, microseconds
--            fixed window    12 bytes  <dI4 window index, count
--            sliding window  52 bytes  <d + 11 x I4: index of the newest sub-window, then the
--                            counts of the 11 most recent sub-windows of W/10 (oldest first);
--                            the oldest is weighted by how much of it is still inside the window
--            admin block     9 bytes   'B' .. <d  blocked until, microseconds
-- ARGV[1]  "1" = decide and charge, "0" = peek (report only, never write)
-- ARGV[2 + 7*(i-1)] .. for limit i: alg (1 sliding, 2 gcra, 3 fixed), limit, window_ms, burst,
--          cost, shadow ("1" = evaluate and count but never reject), ttl_ms for the state key
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
local pack, unpack = struct.pack, struct.unpack
local B = 10
local SLIDING = '<dI4I4I4I4I4I4I4I4I4I4I4'

local function to_ms(us)
  if us < 0 then return -1 end
  return ceil(us / 1000)
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
      local f = 0
      if ck > R then f = 1 - R / ck end
      local start = k
      if k == 0 then start = frac end
      return max(0, (max(start, k + f) - frac) * S)
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
  local b = 2 + 7 * (i - 1)
  local alg = tonumber(ARGV[b])
  local L = tonumber(ARGV[b + 1])
  local W = tonumber(ARGV[b + 2]) * 1000
  local burst = tonumber(ARGV[b + 3])
  local c = tonumber(ARGV[b + 4])
  local shadow = ARGV[b + 5] == '1'
  local raw = redis.call('GET', KEYS[i])
  local ok, remaining, reset, retry, retry1, stamp

  if raw and #raw == 9 and string.sub(raw, 1, 1) == 'B' then
    local untl = unpack('<d', raw, 2)
    if untl > now then
      ok, remaining, reset, retry, retry1, stamp = 0, 0, untl - now, untl - now, untl - now, 0
    end
    raw = nil
  end

  if ok == nil then
    if alg == 2 then
      local T = W / L
      local tat = now
      if raw and #raw == 8 then tat = max(unpack('<d', raw), now) end
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
        writes[i] = pack('<d', stamp)
      else
        remaining = max(0, floor((now - (tat - burst * T)) / T))
        reset = tat - now
        stamp = 0
      end
    elseif alg == 1 then
      local S = W / B
      local j = floor(now / S)
      local frac = (now - j * S) / S
      local counts = {}
      for k = 0, B do counts[k] = 0 end
      if raw and #raw == 52 then
        local v = { unpack(SLIDING, raw) }
        local shift = j - v[1]
        if shift >= 0 and shift <= B then
          for k = 0, B - shift do counts[k] = v[2 + k + shift] end
        end
      end
      local est = counts[0] * (1 - frac)
      for k = 1, B do est = est + counts[k] end
      if est + c <= L then ok = 1 else ok = 0 end
      if ok == 1 then
        retry, retry1 = 0, 0
      else
        retry = sub_retry(counts, L, S, frac, c)
        retry1 = sub_retry(counts, L, S, frac, 1)
      end
      stamp = j
      if ok == 1 then
        counts[B] = counts[B] + c
        remaining = max(0, floor(L - est - c))
        writes[i] = pack(SLIDING, j, counts[0], counts[1], counts[2], counts[3], counts[4], counts[5],
          counts[6], counts[7], counts[8], counts[9], counts[10])
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
      if raw and #raw == 12 then
        local sw, sc = unpack('<dI4', raw)
        if sw == w then cur = sc end
      end
      local elapsed = now - w * W
      if cur + c <= L then ok = 1 else ok = 0 end
      if c > L then retry = -1 elseif ok == 1 then retry = 0 else retry = W - elapsed end
      if cur + 1 <= L then retry1 = 0 else retry1 = W - elapsed end
      reset = W - elapsed
      stamp = w
      if ok == 1 then
        remaining = max(0, L - cur - c)
        writes[i] = pack('<dI4', w, cur + c)
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
    if wr then redis.call('SET', KEYS[i], wr, 'PX', ARGV[2 + 7 * (i - 1) + 6]) end
  end
end

local out = { allowed, rejected, floor(now / 1000) }
for i = 1, n do
  local r = results[i]
  for j = 1, 6 do out[#out + 1] = r[j] end
end
return out
