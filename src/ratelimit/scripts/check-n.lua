-- check-n: decide M requests, each against K rate limits, in order; each request charges all of
-- its limits or none. Several requests share one call when they start in the same event-loop
-- turn of one instance; the result is exactly that of M calls made one after another.
-- KEYS[k]  the distinct state keys of the batch; each a binary string (struct-packed, little-endian):
--            GCRA            8 bytes   <d   theoretical arrival time, microseconds
--            fixed window    12 bytes  <dI4 window index, count
--            sliding window  56 bytes  <d + 12 x I4: index of the newest sub-window; the count of
--                            the oldest of the 11 most recent sub-windows of W/10 (weighted by
--                            how much of it is still inside the window); the sum of the 10
--                            newer counts; the newest count; then the 9 between, oldest first.
--                            The sum and the newest count sit side by side, so the common
--                            admission reads 4 values and writes 8 bytes in place. (52 bytes
--                            without the sum, newest last: the earlier layout, still read.)
--            admin block     9 bytes   'B' .. <d  blocked until, microseconds
-- ARGV[1]  the batch, struct-packed: '<HH' number of limit configs C, number of requests M;
--          C configs '<BdddB': alg (1 sliding, 2 gcra, 3 fixed), limit, window_ms, burst, shadow
--          (1 = evaluate and count but never reject); then per request '<BB' flags, K; then K
--          entries '<HHd': config, key index, cost. Flags: 1 = decide and charge (without it: peek,
--          never write), + 2 = reply with stamps, + 4 = every cost of the request is 1 (the entries
--          still say so; the short path below need not read them)
-- ARGV[1 + g]  ttl_ms of the g-th GCRA config's state keys (GCRA configs counted in config
--          order), as text: GCRA writes its state with SET ... PX on every admission, and a number
--          would be formatted anew each time (measured: +10 % Redis CPU per GCRA decision). A
--          counter (sliding or fixed window) is written whole only when its (sub-)window moves,
--          so its TTL is worked out here from the window, and the call carries no argument for
--          it: each argument costs Redis ~1 200-1 600 instructions per call (callgrind).
--          The TTL is set by the first write of each (sub-)window, which outlives the
--          (sub-)window's later writes: W + W/10 (rounded up) for a sliding window, W for a fixed
--          one, in ms.
-- returns  one string of '<d' values: now_ms, then per request: allowed (1/0), index of the first
--          enforcing limit that rejected (1-based, 0 none), then per limit:
--            admitted   remaining (>= 0), reset_ms                       [, stamp]
--            rejected   -1 - remaining (< 0), reset_ms, retry_ms, retry1_ms [, stamp]
--          retry_ms: wait until this cost fits (-1: never, cost > capacity);
--          retry1_ms: until a cost of 1 fits (what the local block cache may use);
--          stamp (only when asked for): window index or new GCRA TAT (us), which refund-n needs
--          to undo a charge. Admitted limits, by far the most common, take two values.
-- Why binary in and out: inside Redis each argument string, reply value and number-to-text
-- conversion has a cost of its own; one packed string each way is near free. The state keys are
-- read with one MGET and each is written once, at the end: every redis.call has a fixed cost.
-- An admission inside the key's current (sub-)window only adds to its newest counter; such
-- additions are summed per key and written with one SETRANGE of that counter's 4 bytes (which
-- keeps the TTL), so a key that many requests of a batch share is never re-packed, and no key is
-- packed whole unless its window moved. Time is Redis TIME, never the caller's clock.
local t = redis.call('TIME')
local now = t[1] * 1000000 + t[2]
local call = redis.call
local floor, ceil, max = math.floor, math.ceil, math.max
local pack, sunpack, tunpack = struct.pack, struct.unpack, unpack
local B = 10
local SLIDING = '<dI4I4I4I4I4I4I4I4I4I4I4I4'
local SLIDING52 = '<dI4I4I4I4I4I4I4I4I4I4I4'
local cfg = ARGV[1]
local keys = KEYS

local nc, m, pos = sunpack('<HH', cfg)
local vals = call('MGET', tunpack(keys))

-- The common call at low load: one request, charged, whose limits all admit it, each on a key of
-- its own; counters (sliding or fixed window) inside their current (sub-)window, GCRA always. It
-- is decided here with no batch bookkeeping and no per-call table but one for the reply and the
-- writes: one SETRANGE per counter, one SET ... PX per GCRA state. Anything else (a counter key
-- seen for the first time or whose window moved, a block, a rejection, stamps, a peek) falls
-- through to the general loop below with nothing written. Measured on a replayed lone
-- three-limit call answered one at a time: sliding ~11.8 -> ~9.0 us of Redis CPU per call.
if m == 1 then
  local p = 5 + 26 * nc
  local flags, n = sunpack('<BB', cfg, p)
  if (flags == 5 or flags == 1) and n == #keys and n == nc then
    p = p + 2
    -- the reply's values at 1 .. 3 + 2n, then per key the bytes to write and where: a byte offset
    -- for SETRANGE, as text (redis.call formats a number argument with sprintf, which showed in
    -- Redis's profile), or -(ARGV index of the TTL) for a GCRA state's SET ... PX (one table,
    -- presized for three limits). Each value read from a packed string costs Redis about as much as a
    -- dozen Lua operations, so this path reads only the fields it uses.
    local out = { 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0 }
    local o = 3
    local nv = 3 + 2 * n
    local i = 1
    -- GCRA configs seen so far: the next one's TTL is ARGV[2 + g]
    local g = 0
    while i <= n do
      -- a lone request's entry i names config i and key i (each limit has a config and a key of
      -- its own, and the instance packs them in order, without deduplication), so only the
      -- cost is read, and only when some cost is not 1
      local c = 1
      if flags == 1 then c = sunpack('<d', cfg, p + 12 * i - 8) end
      local alg, L, Wms = sunpack('<Bdd', cfg, 26 * i - 21)
      local raw = vals[i]
      local len = raw and #raw or 0
      local r, reset, bytes, at
      if alg == 1 and len == 56 then
        local S = Wms * 100
        local j = now / S
        j = j - j % 1
        local frac = (now - j * S) / S
        local sj, a0, sum, newest = sunpack('<dI4I4I4', raw)
        if sj ~= j then break end
        r = L - (a0 * (1 - frac) + sum) - c
        reset = (B + 1 - frac) * S
        bytes, at = pack('<I4I4', sum + c, newest + c), '12'
      elseif alg == 3 and len == 12 then
        local W = Wms * 1000
        local w = now / W
        w = w - w % 1
        local sw, sc = sunpack('<dI4', raw)
        if sw ~= w then break end
        r = L - sc - c
        reset = W - (now - w * W)
        bytes, at = pack('<I4', sc + c), '8'
      elseif alg == 2 and (len == 8 or len == 0) then
        local burst = sunpack('<d', cfg, 26 * i - 4)
        local T = Wms * 1000 / L
        local tat = now
        if len == 8 then tat = max(sunpack('<d', raw), now) end
        local nt = tat + c * T
        if c > burst or nt - burst * T > now then break end
        r = (now - (nt - burst * T)) / T
        reset = nt - now
        g = g + 1
        bytes, at = pack('<d', ceil(nt)), -1 - g
      else
        break
      end
      if r < 0 then break end
      -- floor of r >= 0, and milliseconds rounded up, without a C call each
      reset = -reset / 1000
      out[o + 1], out[o + 2] = r - r % 1, -(reset - reset % 1)
      out[nv + i], out[nv + n + i] = bytes, at
      o = o + 2
      i = i + 1
    end
    if i > n then
      for k = 1, n do
        local at = out[nv + n + k]
        if at == '12' or at == '8' then
          call('SETRANGE', keys[k], at, out[nv + k])
        else
          call('SET', keys[k], out[nv + k], 'PX', ARGV[-at])
        end
      end
      out[1] = floor(now / 1000)
      if n == 3 then return pack('<ddddddddd', tunpack(out, 1, 9)) end
      return pack('<' .. string.rep('d', o), tunpack(out, 1, o))
    end
  end
end

-- The sliding window's retry helpers (below, in decide). Every function a script defines is
-- created anew on each call; these are created only when a call needs them, and the common case
-- (admitted within the current sub-window) never does.
local sub_retry, drain_time

-- one limit against its current state plus `extra`, the units this batch already admitted on the
-- key's newest counter (nonzero only when that counter is current); returns ok, remaining, reset,
-- retry, retry1 (us), stamp, and what to write when the request is admitted, as two values: a
-- number of units more on the newest counter, or (nil and) a whole new state (its window moved, so
-- the TTL starts anew); both nil for nothing. Two slots, not one of either type: telling a number
-- from a string needs type(), a C call, for every limit of a batch
local function decide(alg, L, W, burst, c, raw, extra)
  if raw and #raw == 9 and string.byte(raw, 1) == 66 then
    local untl = sunpack('<d', raw, 2)
    if untl > now then return 0, 0, untl - now, untl - now, untl - now, 0 end
    raw = nil
  end
  if alg == 1 then
    local S = W / B
    local j = floor(now / S)
    local frac = (now - j * S) / S
    local sj, a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, sum
    if raw and #raw == 56 then
      sj, a0, sum, a10, a1, a2, a3, a4, a5, a6, a7, a8, a9 = sunpack(SLIDING, raw)
    elseif raw and #raw == 52 then
      sj, a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10 = sunpack(SLIDING52, raw)
    end
    -- An admission inside the newest sub-window of a state in the current layout (an addition
    -- written in place) is decided by the caller, with this very test, before it calls here; what
    -- reaches this point is a rejection, a moved window or an earlier layout.
    if not sub_retry then
      -- offset (us) from now until est + c <= L, walking sub-window boundaries forward; -1 if never
      sub_retry = function(counts, L, S, frac, c)
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
      -- offset (us) from now until every request now counted has left the window (0 if none is)
      drain_time = function(counts, S, frac)
        for k = B, 0, -1 do
          if counts[k] > 0 then return (k + 1 - frac) * S end
        end
        return 0
      end
    end
    local counts = { [0] = 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0 }
    if sj then
      local v = { a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10 }
      local shift = j - sj
      if shift >= 0 and shift <= B then
        for k = 0, B - shift do counts[k] = v[1 + k + shift] end
      end
    end
    counts[B] = counts[B] + extra
    local newer = 0
    for k = 1, B do newer = newer + counts[k] end
    local est = counts[0] * (1 - frac) + newer
    local ok, remaining, retry, retry1, wr = 1, 0, 0, 0, nil
    if est + c <= L then
      counts[B] = counts[B] + c
      remaining = max(0, floor(L - est - c))
      wr = pack(SLIDING, j, counts[0], newer + c, counts[10], counts[1],
        counts[2], counts[3], counts[4], counts[5], counts[6], counts[7], counts[8], counts[9])
    else
      ok = 0
      retry = sub_retry(counts, L, S, frac, c)
      retry1 = sub_retry(counts, L, S, frac, 1)
      remaining = max(0, floor(L - est))
    end
    return ok, remaining, drain_time(counts, S, frac), retry, retry1, j, nil, wr
  elseif alg == 2 then
    local T = W / L
    local tat = now
    if raw and #raw == 8 then tat = max(sunpack('<d', raw), now) end
    local new_tat = tat + c * T
    local retry1 = max(0, tat + T - burst * T - now)
    if c > burst then return 0, max(0, floor((now - (tat - burst * T)) / T)), tat - now, -1, retry1, 0 end
    if new_tat - burst * T <= now then
      local stamp = ceil(new_tat)
      return 1, floor((now - (new_tat - burst * T)) / T), new_tat - now, 0, retry1, stamp, nil,
        pack('<d', stamp)
    end
    return 0, max(0, floor((now - (tat - burst * T)) / T)), tat - now, new_tat - burst * T - now, retry1, 0
  end
  local w = floor(now / W)
  local cur, current = 0, false
  if raw and #raw == 12 then
    local sw, sc = sunpack('<dI4', raw)
    if sw == w then cur, current = sc + extra, true end
  end
  local elapsed = now - w * W
  local retry1 = 0
  if cur + 1 > L then retry1 = W - elapsed end
  if cur + c <= L then
    if current then return 1, max(0, L - cur - c), W - elapsed, 0, retry1, w, c end
    return 1, max(0, L - cur - c), W - elapsed, 0, retry1, w, nil, pack('<dI4', w, c)
  end
  local retry = W - elapsed
  if c > L then retry = -1 end
  return 0, max(0, L - cur), W - elapsed, retry, retry1, w
end

-- every table below is made once per call: table creation and the garbage it leaves are a
-- large share of a short script's cost inside Redis. They are presized for a call of one decision
-- with up to four limits (a table that grows reallocates at each power of two: ~1.5 us of a
-- ~15 us single-decision call).
-- config k at cf[8k-7 .. 8k]: alg, limit, window (us), burst, shadow, then for a sliding window
-- what depends only on the config and `now`, worked out once per call rather than once per
-- decision: the newest sub-window's index, the weight of the oldest sub-window still counted,
-- and the reset of an admission inside the newest sub-window (ms, rounded up); for GCRA, the
-- ARGV index of its TTL
local cf = {
  0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
}
local gcras = 0
for k = 1, nc do
  local b = 8 * k - 3
  local alg, W
  alg, cf[b - 3], W, cf[b - 1], cf[b], pos = sunpack('<BdddB', cfg, pos)
  W = W * 1000
  cf[b - 4], cf[b - 2] = alg, W
  if alg == 2 then
    gcras = gcras + 1
    cf[b + 1] = 1 + gcras
  elseif alg == 1 then
    local S = W / B
    local j = floor(now / S)
    local frac = (now - j * S) / S
    cf[b + 1], cf[b + 2], cf[b + 3] = j, 1 - frac, ceil((B + 1 - frac) * S / 1000)
  end
end

-- per key written by this batch: its config index, negated when vals[k] was replaced by a whole
-- new state (written with SET ... PX); and the units admitted on its newest counter since vals[k]
-- (written with SETRANGE, which keeps the TTL)
local dirty, added = {}, {}
-- per limit of the current request, reused: key index, config index, what to write (units to add,
-- a whole state)
local lw = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0 }
local out = {
  floor(now / 1000), 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
  0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
}
local o = 1

for _ = 1, m do
  local flags, n
  flags, n, pos = sunpack('<BB', cfg, pos)
  local charge, stamps = flags % 2, flags % 4 >= 2
  local head = o + 1
  o = o + 2
  local allowed, rejected = 1, 0
  for i = 1, n do
    local ci, ki, c
    ci, ki, c, pos = sunpack('<HHd', cfg, pos)
    local b = 8 * ci - 3
    local raw = vals[ki]
    local ok, remaining, reset, retry, retry1, stamp, add, state
    -- The batch's common case, a sliding window admitting inside its newest sub-window, is
    -- decided here from three of the state's values: no call to decide(), which unpacks all
    -- thirteen and returns seven (callgrind, a replayed call of 32 three-limit decisions: ~21 %
    -- fewer instructions inside Redis). Anything else goes to decide().
    if cf[b - 4] == 1 and raw and #raw == 56 then
      local sj, a0, sum = sunpack('<dI4I4', raw)
      if sj == cf[b + 1] then
        local L = cf[b - 3]
        local est = a0 * cf[b + 2] + sum + (added[ki] or 0)
        if est + c <= L then
          local r = L - est - c
          if r < 0 then r = 0 end
          ok, remaining, reset, stamp, add = 1, r - r % 1, cf[b + 3], sj, c
        end
      end
    end
    if not ok then
      ok, remaining, reset, retry, retry1, stamp, add, state =
        decide(cf[b - 4], cf[b - 3], cf[b - 2], cf[b - 1], c, raw, added[ki] or 0)
      -- microseconds to whole milliseconds, rounded up (a negative wait means never: -1)
      if reset < 0 then reset = -1 else reset = ceil(reset / 1000) end
    end
    local w = 4 * i
    lw[w - 3], lw[w - 2], lw[w - 1], lw[w] = ki, ci, add, state
    if ok == 1 then
      out[o + 1], out[o + 2] = remaining, reset
      o = o + 2
    else
      if cf[b] ~= 1 and allowed == 1 then
        allowed = 0
        rejected = i
      end
      if retry < 0 then retry = -1 else retry = ceil(retry / 1000) end
      if retry1 < 0 then retry1 = -1 else retry1 = ceil(retry1 / 1000) end
      out[o + 1], out[o + 2], out[o + 3], out[o + 4] = -1 - remaining, reset, retry, retry1
      o = o + 4
    end
    if stamps then
      o = o + 1
      out[o] = stamp
    end
  end
  out[head], out[head + 1] = allowed, rejected
  if charge == 1 and allowed == 1 then
    for i = 1, n do
      local w = 4 * i
      local add, state = lw[w - 1], lw[w]
      if add then
        local ki = lw[w - 3]
        added[ki] = (added[ki] or 0) + add
        if not dirty[ki] then dirty[ki] = lw[w - 2] end
      elseif state then
        -- A whole state is written only when the key's (sub-)window moved (or for GCRA), so
        -- nothing was added to its old counter before in this batch; later additions go on it.
        local ki = lw[w - 3]
        vals[ki], dirty[ki] = state, -lw[w - 2]
      end
    end
  end
end

for k = 1, #keys do
  local ci = dirty[k]
  if ci then
    local v, add = vals[k], added[k]
    -- what the additions change, in place (GCRA states never take additions): a sliding window's
    -- sum of the newer counts and newest count (bytes 12-19, 0-based), a fixed window's count
    -- (bytes 8-11)
    -- (the offset also as text, for SETRANGE: see the short path)
    local at, atText, bytes = 0, nil, nil
    if add then
      if cf[8 * (ci < 0 and -ci or ci) - 7] == 1 then
        local sum, newest = sunpack('<I4I4', v, 13)
        at, atText, bytes = 12, '12', pack('<I4I4', sum + add, newest + add)
      else
        at, atText, bytes = 8, '8', pack('<I4', sunpack('<I4', v, 9) + add)
      end
    end
    if ci < 0 then
      if add then v = string.sub(v, 1, at) .. bytes .. string.sub(v, at + #bytes + 1) end
      local b = -8 * ci - 3
      local alg, ttl = cf[b - 4], cf[b - 2] / 1000
      if alg == 2 then
        ttl = ARGV[cf[b + 1]]
      elseif alg == 1 then
        ttl = ttl + ceil(ttl / 10)
      end
      call('SET', keys[k], v, 'PX', ttl)
    else
      call('SETRANGE', keys[k], atText, bytes)
    end
  end
end

return pack('<' .. string.rep('d', o), tunpack(out, 1, o))
