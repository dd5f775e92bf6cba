-- Give back a failed checkout attempt's claim on its buyer's cart (cart_claim.lua): the
-- cart is free for the next checkout. Idempotent; releasing a claim that was never made
-- leaves a tombstone, so a late cart_claim.lua of that attempt is refused. A taken claim
-- (its order committed) is never released.
-- KEYS[1] the cart's claims hash ('live' -> the claim holding the cart;
--         `<order id>#<attempt>` -> 'held' | 'taken' | 'released')
-- ARGV[1] claim id `<order id>#<attempt>`
-- Returns: the claim's state after the call: 'released' | 'taken'
local K_CLAIMS, id = KEYS[1], ARGV[1]
if redis.call('HGET', K_CLAIMS, id) == 'taken' then return 'taken' end
redis.call('HSET', K_CLAIMS, id, 'released')
if redis.call('HGET', K_CLAIMS, 'live') == id then redis.call('HDEL', K_CLAIMS, 'live') end
return 'released'
