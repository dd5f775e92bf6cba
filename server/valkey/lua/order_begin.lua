-- Open (or find) an order attempt in its bucket's slot: step 0 of a purchase.
-- The order id is derived from (buyer, idempotency key), so a retried or concurrent
-- duplicate request finds the same record; what it may do with it is the idempotency rule
-- (lib/idempotency.lua, the one implementation): a committed order is returned as it is
-- (same request), a pending attempt is resumed with its stored plan (same request), a
-- failed attempt must be released first (order_step.lua) whatever the request, and then
-- the key starts attempt n+1 (a failed request binds nothing: the key may then carry a
-- different request).
-- KEYS[1] order hash   KEYS[2] the bucket's saga index
-- ARGV[1] order id   ARGV[2] request fingerprint   ARGV[3] plan JSON
-- ARGV[4] when the saga should take over if the attempt is still pending (ms)
-- Returns: {'committed', attempt, order JSON} | {'pending', attempt, plan JSON}
--        | {'new', attempt, plan JSON} | {'failed', attempt, plan JSON}
-- Fails: LC conflict (the key was used for a different request, or is void)
--!include lib/util.lua
--!include lib/idempotency.lua
local st = redis.call('HMGET', KEYS[1], 'status', 'req_hash', 'attempt', 'json', 'plan')
local answer = idempotency(st[1], st[2], ARGV[2])
if answer == 'conflict' then return idempotency_conflict() end
if answer == 'replay' then return {'committed', tonumber(st[3]), st[4]} end
if answer == 'join' then return {'pending', tonumber(st[3]), st[5]} end
if answer == 'release' then return {'failed', tonumber(st[3]), st[5]} end
local attempt = st[1] and tonumber(st[3]) + 1 or 1
redis.call('HSET', KEYS[1], 'status', 'pending', 'req_hash', ARGV[2], 'attempt', attempt,
  'plan', ARGV[3], 'begun_at', NOW)
redis.call('ZADD', KEYS[2], tonumber(ARGV[4]), 'o:' .. ARGV[1])
return {'new', attempt, ARGV[3]}
