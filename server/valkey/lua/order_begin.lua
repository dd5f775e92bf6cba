-- Open (or find) an order attempt in its bucket's slot: step 0 of a purchase.
-- The order id is derived from (buyer, idempotency key), so a retried or concurrent
-- duplicate request finds the same record: a committed order is returned as it is, a
-- pending attempt is resumed with its stored plan, a failed attempt must be released
-- first (order_step.lua) and then starts attempt n+1 (a failed request binds nothing:
-- the key may then carry a different request).
-- KEYS[1] order hash   KEYS[2] the bucket's saga index
-- ARGV[1] order id   ARGV[2] request fingerprint   ARGV[3] plan JSON
-- ARGV[4] when the saga should take over if the attempt is still pending (ms)
-- Returns: {'committed', attempt, order JSON} | {'pending', attempt, plan JSON}
--        | {'new', attempt, plan JSON} | {'failed', attempt, plan JSON}
-- Fails: LC conflict (the key was used for a different request)
local st = redis.call('HMGET', KEYS[1], 'status', 'req_hash', 'attempt', 'json', 'plan')
local attempt = 1
if st[1] then
  attempt = tonumber(st[3])
  -- a failed attempt binds nothing: once released, the key may carry another request
  if st[1] == 'failed' then return {'failed', attempt, st[5]} end
  if st[1] ~= 'released' and st[2] ~= ARGV[2] then
    return redis.error_reply('LC conflict {"message":"idempotency key reused with a different request"}')
  end
  if st[1] == 'committed' then return {'committed', attempt, st[4]} end
  if st[1] == 'pending' then return {'pending', attempt, st[5]} end
  attempt = attempt + 1
end
local t = redis.call('TIME')
redis.call('HSET', KEYS[1], 'status', 'pending', 'req_hash', ARGV[2], 'attempt', attempt,
  'plan', ARGV[3], 'begun_at', tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))
redis.call('ZADD', KEYS[2], tonumber(ARGV[4]), 'o:' .. ARGV[1])
return {'new', attempt, ARGV[3]}
