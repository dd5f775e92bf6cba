-- Finish one voucher use (voucher_reserve.lua) once its order attempt is decided: 'take'
-- when the order committed (the use counts, its discount is added to discount_given and
-- the use is logged), 'release' when it failed (the use goes back, also the buyer's).
-- Idempotent; releasing a use that was never made leaves a tombstone.
-- KEYS[1] voucher hash   KEYS[2] voucher uses hash   KEYS[3] voucher log (list)
-- ARGV[1] reservation id `<order id>#<attempt>`   ARGV[2] 'take' | 'release'
-- Returns: the use's state after the call ('taken' | 'released' | 'missing')
--!include lib/util.lua
local K_VOUCHER, K_USES, K_LOG = KEYS[1], KEYS[2], KEYS[3]
local rid, op = ARGV[1], ARGV[2]
local raw = redis.call('HGET', K_USES, rid)
if not raw then
  if op == 'take' then return 'missing' end
  redis.call('HSET', K_USES, rid, cjson.encode({state = 'released', at = NOW}))
  return 'released'
end
local u = cjson.decode(raw)
if u.state ~= 'held' then return u.state end
redis.call('HINCRBY', K_VOUCHER, 'held', -1)
if op == 'take' then
  redis.call('HINCRBY', K_VOUCHER, 'used', 1)
  redis.call('HINCRBY', K_VOUCHER, 'discount_given', tonumber(u.discount))
  redis.call('LPUSH', K_LOG, '{"order":' .. cjson.encode(string.match(rid, '^[^#]+')) ..
    ',"buyer":' .. cjson.encode(u.buyer) .. ',"discount":' .. int(u.discount) ..
    ',"session":' .. cjson.encode(u.session) .. ',"at":' .. int(NOW) .. '}')
  u.state = 'taken'
else
  redis.call('HINCRBY', K_USES, 'b:' .. u.buyer, -1)
  u.state = 'released'
end
redis.call('HSET', K_USES, rid, cjson.encode(u))
return u.state
