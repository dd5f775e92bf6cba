-- A buyer's cart and its version at one instant (read only): what a checkout consumes is
-- the version it read (cart_claim.lua), so the lines and the version must be read together
-- (two commands could straddle a change). The touches are read with them for a checkout.
-- KEYS[1] cart hash   KEYS[2] the cart's version counter   KEYS[3] touches hash (optional)
-- Returns: {the cart as a flat HGETALL list, its version (0: never changed),
--           the touches as a flat HGETALL list (empty without KEYS[3])}
local touches = {}
if KEYS[3] then touches = redis.call('HGETALL', KEYS[3]) end
return {redis.call('HGETALL', KEYS[1]), tonumber(redis.call('GET', KEYS[2]) or '0'), touches}
