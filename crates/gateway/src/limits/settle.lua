-- Settlement: replace a reservation's estimates with what the request really used. One round trip.
--
-- KEYS, four per scope: tokens window, in-flight leases, reserved cost, spent this period.
-- ARGV: now_ms, member ("" when nothing was reserved), admission bucket, estimated tokens, actual
-- tokens, estimated cost, actual cost (micro-USD), bucket_ms, buckets, window_ttl_ms, then three
-- per scope: tokens tracked (0/1), lease held (0/1), TTL of the spent key in ms (-1: no budget).
-- The lease is removed once: only the call that removes it gives back the reserved cost, so a
-- lease that already expired (and was given back by admit.lua) is never given back twice.
local now = tonumber(ARGV[1])
local member = ARGV[2]
local b = tonumber(ARGV[3])
local est_tokens, tokens = tonumber(ARGV[4]), tonumber(ARGV[5])
local est_cost, cost = tonumber(ARGV[6]), tonumber(ARGV[7])
local bucket_ms, buckets = tonumber(ARGV[8]), tonumber(ARGV[9])
local window_ttl = tonumber(ARGV[10])
local oldest = math.floor(now / bucket_ms) - buckets + 1
local scopes = #KEYS / 4

for i = 0, scopes - 1 do
  local k = i * 4
  local a = 11 + i * 3
  if ARGV[a] == '1' and tokens ~= est_tokens and b >= oldest then
    if redis.call('HINCRBY', KEYS[k + 1], ARGV[3], tokens - est_tokens) < 0 then
      redis.call('HSET', KEYS[k + 1], ARGV[3], 0)
    end
    redis.call('PEXPIRE', KEYS[k + 1], window_ttl)
  end
  if ARGV[a + 1] == '1' and member ~= '' then
    if redis.call('ZREM', KEYS[k + 2], member) == 1 and est_cost > 0 then
      if redis.call('DECRBY', KEYS[k + 3], est_cost) <= 0 then redis.call('DEL', KEYS[k + 3]) end
    end
  end
  local spent_ttl = tonumber(ARGV[a + 2])
  if spent_ttl >= 0 and cost > 0 then
    redis.call('INCRBY', KEYS[k + 4], ARGV[7])
    redis.call('PEXPIRE', KEYS[k + 4], spent_ttl)
  end
end
return 1
