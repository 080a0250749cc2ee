-- Seeds a period's spend from the store: the larger of what Redis has and what the store says,
-- so replicas seeding at different times never lower it. KEYS: spent key. ARGV: micro-USD, ttl ms.
local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
local usd = tonumber(ARGV[1])
if usd > cur then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
elseif cur > 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 1
