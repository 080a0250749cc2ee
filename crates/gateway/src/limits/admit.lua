-- Admission: check every scope, then reserve in every scope, or in none. One round trip.
--
-- KEYS, five per scope: requests window (hash bucket -> count), tokens window (hash bucket ->
-- tokens), in-flight leases (zset "id|cost" -> lease expiry ms), reserved cost (string, micro-USD),
-- spent this period (string, micro-USD).
-- ARGV: now_ms, member ("id|cost"), lease_ms, tokens, cost (micro-USD), bucket_ms, buckets,
-- window_ttl_ms, then six per scope: rpm, tpm, max_concurrency, budget (micro-USD), ms until the
-- period ends (-1: lifetime), unused. A limit of -1 is "no limit".
-- Returns {0, scope index, kind (1 rpm, 2 tpm, 3 concurrency, 4 budget), retry ms (-1 never,
-- -2 unknown), limit, remaining} or {1, then per scope: requests used, requests reset ms,
-- tokens used, tokens reset ms}.
local now = tonumber(ARGV[1])
local member = ARGV[2]
local lease = tonumber(ARGV[3])
local tokens = tonumber(ARGV[4])
local cost = tonumber(ARGV[5])
local bucket_ms = tonumber(ARGV[6])
local buckets = tonumber(ARGV[7])
local window_ttl = tonumber(ARGV[8])
local nb = math.floor(now / bucket_ms)
local oldest = nb - buckets + 1
local scopes = #KEYS / 5

local function window(key)
  local flat = redis.call('HGETALL', key)
  local used, entries, stale = 0, {}, {}
  for i = 1, #flat, 2 do
    local b = tonumber(flat[i])
    if b < oldest then
      stale[#stale + 1] = flat[i]
    else
      local n = tonumber(flat[i + 1])
      used = used + n
      entries[#entries + 1] = {b, n}
    end
  end
  if #stale > 0 then
    redis.call('HDEL', key, unpack(stale))
  end
  table.sort(entries, function(x, y) return x[1] < y[1] end)
  return used, entries
end

local function retry(entries, used, limit, need)
  if need > limit then return -1 end
  local left = used
  for _, e in ipairs(entries) do
    left = left - e[2]
    if left + need <= limit then return (e[1] + buckets) * bucket_ms - now end
  end
  return 0
end

local function reset(entries)
  local last = nb
  if #entries > 0 and entries[#entries][1] > last then last = entries[#entries][1] end
  return (last + buckets) * bucket_ms - now
end

local function release_expired(leases, reserved)
  local expired = redis.call('ZRANGEBYSCORE', leases, '-inf', now)
  if #expired == 0 then return end
  local freed = 0
  for _, m in ipairs(expired) do
    freed = freed + (tonumber(string.match(m, '|(%d+)$')) or 0)
  end
  redis.call('ZREMRANGEBYSCORE', leases, '-inf', now)
  if freed > 0 then
    if redis.call('DECRBY', reserved, freed) <= 0 then redis.call('DEL', reserved) end
  end
end

local need_tokens = math.max(tokens, 1)
local need_cost = math.max(cost, 1)
local seen = {}

-- Phase 1: check. Only housekeeping (expired buckets and leases) is written here.
for i = 0, scopes - 1 do
  local k = i * 5
  local a = 9 + i * 6
  local rpm, tpm = tonumber(ARGV[a]), tonumber(ARGV[a + 1])
  local maxc, budget = tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3])
  local period_left = tonumber(ARGV[a + 4])
  local s = {}
  if rpm >= 0 then
    local used, entries = window(KEYS[k + 1])
    if used + 1 > rpm then
      return {0, i, 1, retry(entries, used, rpm, 1), rpm, math.max(rpm - used, 0)}
    end
    s.r_used, s.r_reset = used + 1, reset(entries)
  end
  if tpm >= 0 then
    local used, entries = window(KEYS[k + 2])
    if used + need_tokens > tpm then
      return {0, i, 2, retry(entries, used, tpm, need_tokens), tpm, math.max(tpm - used, 0)}
    end
    s.t_used, s.t_reset = used + tokens, reset(entries)
  end
  if maxc >= 0 or budget >= 0 then
    release_expired(KEYS[k + 3], KEYS[k + 4])
  end
  if maxc >= 0 then
    local n = redis.call('ZCARD', KEYS[k + 3])
    if n + 1 > maxc then
      return {0, i, 3, -2, maxc, math.max(maxc - n, 0)}
    end
  end
  if budget >= 0 then
    local spent = tonumber(redis.call('GET', KEYS[k + 5]) or '0')
    local reserved = tonumber(redis.call('GET', KEYS[k + 4]) or '0')
    if spent + reserved + need_cost > budget then
      local r = -2
      if spent + need_cost > budget then r = period_left end
      return {0, i, 4, r, budget, math.max(budget - spent - reserved, 0)}
    end
  end
  seen[i] = s
end

-- Phase 2: every scope admits; reserve in all of them.
local out = {1}
for i = 0, scopes - 1 do
  local k = i * 5
  local a = 9 + i * 6
  local rpm, tpm = tonumber(ARGV[a]), tonumber(ARGV[a + 1])
  local maxc, budget = tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3])
  local s = seen[i]
  -- A window's TTL is refreshed when a new bucket starts: every write is then within its TTL.
  if rpm >= 0 and redis.call('HINCRBY', KEYS[k + 1], nb, 1) == 1 then
    redis.call('PEXPIRE', KEYS[k + 1], window_ttl)
  end
  if tpm >= 0 and redis.call('HINCRBY', KEYS[k + 2], nb, ARGV[4]) == tokens then
    redis.call('PEXPIRE', KEYS[k + 2], window_ttl)
  end
  if maxc >= 0 or budget >= 0 then
    redis.call('ZADD', KEYS[k + 3], now + lease, member)
    redis.call('PEXPIRE', KEYS[k + 3], lease + window_ttl)
  end
  if budget >= 0 and cost > 0 then
    redis.call('INCRBY', KEYS[k + 4], ARGV[5])
    redis.call('PEXPIRE', KEYS[k + 4], lease + window_ttl)
  end
  out[#out + 1] = s.r_used or -1
  out[#out + 1] = s.r_reset or -1
  out[#out + 1] = s.t_used or -1
  out[#out + 1] = s.t_reset or -1
end
return out
