-- Finish one reservation (reserve.lua) once its order attempt is decided: 'take' when the
-- order committed (the units are sold), 'release' when it failed (the units go back to
-- the deal while it is open, else to the stock). Idempotent; releasing a reservation that
-- was never made leaves a tombstone so a late reserve.lua of that attempt is refused.
-- A unit the reservation took from the buyer's waitlist hold: 'take' ends the hold (a
-- waitlist conversion), 'release' gives it back to the hold (which may then expire).
-- KEYS[1] product hash   KEYS[2] deals hash   KEYS[3] reservations   KEYS[4] holds hash
-- ARGV[1] reservation id   ARGV[2] 'take' | 'release'
-- Returns: the reservation's state after the call ('taken' | 'released' | 'missing'), or
--          'returned' when this call gave held units back (the caller announces the stock)
--!include lib/util.lua
local K_PRODUCT, K_DEALS, K_RES, K_HOLDS = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
--!include lib/deal.lua
local rid, op = ARGV[1], ARGV[2]
local raw = redis.call('HGET', K_RES, rid)
if not raw then
  if op == 'take' then return 'missing' end
  redis.call('HSET', K_RES, rid, cjson.encode({state = 'released', qty = 0, at = NOW}))
  return 'released'
end
local r = cjson.decode(raw)
if r.state ~= 'held' then return r.state end
local qty = tonumber(r.qty)
local from_hold = tonumber(r.hold or 0)
local hold = nil
if from_hold == 1 then
  local raw_hold = redis.call('HGET', K_HOLDS, r.buyer)
  if raw_hold then
    hold = cjson.decode(raw_hold)
    if hold.res ~= rid then hold = nil end
  end
end
if op == 'take' then
  if from_hold == 1 then
    if hold then redis.call('HDEL', K_HOLDS, r.buyer) end
    redis.call('HINCRBY', K_PRODUCT, 'wl_converted', 1)
  end
  if r.kind ~= 'external' then
    redis.call('HINCRBY', K_PRODUCT, 'reserved', -qty)
    redis.call('HINCRBY', K_PRODUCT, 'sold', qty)
  end
  r.state = 'taken'
else
  if r.kind == 'deal' then
    redis.call('HINCRBY', K_PRODUCT, 'reserved', -qty)
    redis.call('HINCRBY', K_DEALS, 'b:' .. r.deal .. ':' .. r.buyer, -qty)
    local d = get_deal(r.session)
    if d and d.id == r.deal and d.status == 'open' then
      d.stock_left = tonumber(d.stock_left) + qty
      put_deal(d)
      redis.call('HINCRBY', K_PRODUCT, 'held', qty)
    else
      redis.call('HINCRBY', K_PRODUCT, 'stock', qty)
    end
  elseif r.kind == 'stock' then
    redis.call('HINCRBY', K_PRODUCT, 'reserved', -qty)
    if hold then  -- the held unit goes back to its hold
      hold.res = ''
      redis.call('HSET', K_HOLDS, r.buyer, cjson.encode(hold))
      redis.call('HINCRBY', K_PRODUCT, 'wl_held', 1)
      redis.call('HINCRBY', K_PRODUCT, 'stock', qty - 1)
    else
      redis.call('HINCRBY', K_PRODUCT, 'stock', qty)
    end
  end
  r.state = 'released'
end
redis.call('HSET', K_RES, rid, cjson.encode(r))
if op == 'release' and r.kind ~= 'external' then return 'returned' end
return r.state
