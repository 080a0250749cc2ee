-- Snapshot of one scope, read only. KEYS: requests window, tokens window, in-flight leases,
-- reserved cost, spent this period. ARGV: now_ms, bucket_ms, buckets.
-- Returns {requests used, requests reset ms, tokens used, tokens reset ms, in flight, reserved, spent}.
local now = tonumber(ARGV[1])
local bucket_ms, buckets = tonumber(ARGV[2]), tonumber(ARGV[3])
local oldest = math.floor(now / bucket_ms) - buckets + 1

local function window(key)
  local flat = redis.call('HGETALL', key)
  local used, last = 0, -1
  for i = 1, #flat, 2 do
    local b = tonumber(flat[i])
    if b >= oldest then
      used = used + tonumber(flat[i + 1])
      if b > last then last = b end
    end
  end
  if last < 0 then return used, 0 end
  return used, math.max((last + buckets) * bucket_ms - now, 0)
end

local r_used, r_reset = window(KEYS[1])
local t_used, t_reset = window(KEYS[2])
local in_flight = redis.call('ZCOUNT', KEYS[3], '(' .. ARGV[1], '+inf')
local reserved = tonumber(redis.call('GET', KEYS[4]) or '0')
local spent = tonumber(redis.call('GET', KEYS[5]) or '0')
return {r_used, r_reset, t_used, t_reset, in_flight, reserved, spent}
