-- check-n: decide K rate limits atomically and charge all of them or none.
-- KEYS[i]  state key of limit i, a string holding one of:
--            sliding window  "<window index>:<previous count>:<current count>"
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

local function sliding_retry(prev, cur, L, W, elapsed, c)
  if c > L then return -1 end
  if prev * (W - elapsed) / W + cur + c <= L then return 0 end
  if cur + c <= L and prev > 0 then
    -- the previous window's weight must fall until prev * (W - e) / W <= L - cur - c
    return max(0, W * (1 - (L - cur - c) / prev) - elapsed)
  end
  local e = 0
  if cur > 0 then e = max(0, W * (1 - (L - c) / cur)) end
  return (W - elapsed) + e
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
    else
      local w = floor(now / W)
      local prev, cur = 0, 0
      if raw then
        local sw, sp, sc = string.match(raw, '^(%d+):(%d+):(%d+)$')
        if sw then
          sw = tonumber(sw)
          if sw == w then
            prev, cur = tonumber(sp), tonumber(sc)
          elseif sw == w - 1 then
            prev = tonumber(sc)
          end
        end
      end
      local elapsed = now - w * W
      if alg == 3 then prev = 0 end
      local est = prev * (W - elapsed) / W + cur
      if est + c <= L then ok = 1 else ok = 0 end
      if alg == 3 then
        if c > L then retry = -1 elseif ok == 1 then retry = 0 else retry = W - elapsed end
        if cur + 1 <= L then retry1 = 0 else retry1 = W - elapsed end
      else
        retry = sliding_retry(prev, cur, L, W, elapsed, c)
        retry1 = sliding_retry(prev, cur, L, W, elapsed, 1)
      end
      reset = W - elapsed
      stamp = w
      if ok == 1 then
        remaining = max(0, floor(L - est - c))
        local ttl = 2 * Wms
        if alg == 3 then ttl = max(1, ceil((W - elapsed) / 1000)) end
        writes[i] = { string.format('%.0f:%.0f:%.0f', w, prev, cur + c), ttl }
      else
        remaining = max(0, floor(L - est))
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
