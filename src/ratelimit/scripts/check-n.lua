-- check-n: decide K rate limits atomically and charge all of them or none.
-- KEYS[i]  state key of limit i: a binary string (struct-packed, little-endian):
--            GCRA            8 bytes   <d   theoretical arrival time, microseconds
--            fixed window    12 bytes  <dI4 window index, count
--            sliding window  52 bytes  <d + 11 x I4: index of the newest sub-window, then the
--                            counts of the 11 most recent sub-windows of W/10 (oldest first);
--                            the oldest is weighted by how much of it is still inside the window
--            admin block     9 bytes   'B' .. <d  blocked until, microseconds
-- ARGV[1]  the request, struct-packed: B charge (1 = decide and charge, 0 = peek, never write),
--          then per limit i '<BddddB': alg (1 sliding, 2 gcra, 3 fixed), limit, window_ms, burst,
--          cost, shadow (1 = evaluate and count but never reject)
-- ARGV[1 + i]  ttl_ms of limit i's state key, as text (SET ... PX takes it as is); set by the
--          first write of each (sub-)window, which outlives the (sub-)window's later writes
-- returns  one string of '<d' values: allowed (1/0), index of the first enforcing limit that
--          rejected (1-based, 0 none), now_ms, then 6 per limit: ok (1/0), remaining, reset_ms,
--          retry_ms, retry1_ms, stamp
--          retry_ms: wait until this cost fits (-1: never, cost > capacity);
--          retry1_ms: until a cost of 1 fits (what the local block cache may use);
--          stamp: window index or new GCRA TAT (us), which refund-n needs to undo a charge.
-- Why binary in and out: inside Redis each argument string, reply value and number-to-text
-- conversion has a cost of its own; one packed string each way is near free. The state keys are
-- read with one MGET: every redis.call costs about a microsecond of fixed overhead.
-- Time is Redis TIME, never the caller's clock.
local t = redis.call('TIME')
local now = t[1] * 1000000 + t[2]
local call = redis.call
local floor, ceil, max = math.floor, math.ceil, math.max
local pack, sunpack, tunpack = struct.pack, struct.unpack, unpack
local B = 10
local SLIDING = '<dI4I4I4I4I4I4I4I4I4I4I4'
local cfg = ARGV[1]
local keys = KEYS
local n = #keys
local charge = sunpack('<B', cfg) == 1
local pos = 2


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

local vals = call('MGET', tunpack(keys))
local out = { 1, 0, floor(now / 1000) }
local writes = {}
-- true: the key already carries a TTL that outlives this write (set by the first write of the
-- current (sub-)window), so SET ... KEEPTTL, which costs Redis less than SET ... PX
local keep = {}
local allowed = 1
local rejected = 0

for i = 1, n do
  local alg, L, W, burst, c, shadow
  alg, L, W, burst, c, shadow, pos = sunpack('<BddddB', cfg, pos)
  W = W * 1000
  local raw = vals[i]
  local ok, remaining, reset, retry, retry1, stamp

  if raw and #raw == 9 and string.byte(raw, 1) == 66 then
    local untl = sunpack('<d', raw, 2)
    if untl > now then
      ok, remaining, reset, retry, retry1, stamp = 0, 0, untl - now, untl - now, untl - now, 0
    end
    raw = nil
  end

  if ok == nil then
    if alg == 1 then
      local S = W / B
      local j = floor(now / S)
      local frac = (now - j * S) / S
      local sj, a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10
      if raw and #raw == 52 then sj, a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10 = sunpack(SLIDING, raw) end
      if sj == j then
        -- common case: the newest sub-window is still current, no shifting
        local newer = a1 + a2 + a3 + a4 + a5 + a6 + a7 + a8 + a9 + a10
        local est = a0 * (1 - frac) + newer
        stamp = j
        if est + c <= L then
          ok, retry, retry1 = 1, 0, 0
          remaining = max(0, floor(L - est - c))
          writes[i] = pack(SLIDING, j, a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10 + c)
          keep[i] = true
        else
          ok = 0
          local counts = { [0] = a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10 }
          retry = sub_retry(counts, L, S, frac, c)
          retry1 = sub_retry(counts, L, S, frac, 1)
          remaining = max(0, floor(L - est))
        end
        -- until every request now counted has left the window (a10 + c > 0 when admitted)
        if ok == 1 or a10 > 0 then
          reset = (B + 1 - frac) * S
        else
          local counts = { [0] = a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10 }
          local newest = -1
          for k = 0, B do if counts[k] > 0 then newest = k end end
          if newest < 0 then reset = 0 else reset = (newest + 1 - frac) * S end
        end
      else
        local counts = { [0] = 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0 }
        if sj then
          local v = { a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10 }
          local shift = j - sj
          if shift >= 0 and shift <= B then
            for k = 0, B - shift do counts[k] = v[1 + k + shift] end
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
        local newest = -1
        for k = 0, B do if counts[k] > 0 then newest = k end end
        if newest < 0 then reset = 0 else reset = (newest + 1 - frac) * S end
      end
    elseif alg == 2 then
      local T = W / L
      local tat = now
      if raw and #raw == 8 then tat = max(sunpack('<d', raw), now) end
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
    else
      local w = floor(now / W)
      local cur = 0
      if raw and #raw == 12 then
        local sw, sc = sunpack('<dI4', raw)
        if sw == w then
          cur = sc
          keep[i] = true
        end
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

  if ok == 0 and shadow ~= 1 and allowed == 1 then
    allowed = 0
    rejected = i
  end
  local b = 6 * i - 2
  -- microseconds to whole milliseconds, rounded up (a negative retry means never: -1)
  out[b], out[b + 1], out[b + 5] = ok, remaining, stamp
  if reset < 0 then out[b + 2] = -1 else out[b + 2] = ceil(reset / 1000) end
  if retry < 0 then out[b + 3] = -1 else out[b + 3] = ceil(retry / 1000) end
  if retry1 < 0 then out[b + 4] = -1 else out[b + 4] = ceil(retry1 / 1000) end
end

if charge and allowed == 1 then
  for i = 1, n do
    local wr = writes[i]
    if wr then
      if keep[i] then call('SET', keys[i], wr, 'KEEPTTL') else call('SET', keys[i], wr, 'PX', ARGV[1 + i]) end
    end
  end
end

out[1], out[2] = allowed, rejected
return pack('<' .. string.rep('d', 3 + 6 * n), tunpack(out))
