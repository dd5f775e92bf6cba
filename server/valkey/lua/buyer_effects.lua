-- A committed order's effects on its buyer, once: the buyer's order list, the cart lines
-- it bought (each only if unchanged since checkout read it) and the checkout's claim on the
-- cart taken (cart_claim.lua: the cart is free for the next checkout), the buy_now touch,
-- and the private `order` (and emptied `cart`) events to every connection of the buyer.
-- KEYS[1] the buyer's applied-effects set   KEYS[2] order list   KEYS[3] cart
-- KEYS[4] touches   KEYS[5] the buyer's private channel (sharded pub/sub)
-- KEYS[6] the cart's version counter   KEYS[7] the cart's claims hash
-- ARGV[1] effect id `o:<order id>`   ARGV[2] order id   ARGV[3] order JSON
-- ARGV[4] cart lines bought: JSON {product: line JSON as read}, or '' (not a checkout)
-- ARGV[5] touch product or ''   ARGV[6] the touch's session
-- ARGV[7] the checkout's claim id `<order id>#<attempt>`, or '' (no claim)
-- Returns: {1 when applied now (0: applied before), the cart's version when this changed
--          the cart and left lines in it (the node publishes that cart), else 0}
--!include lib/util.lua
--!include lib/effects.lua
if redis.call('SADD', KEYS[1], ARGV[1]) == 0 then return {0, 0} end
if ARGV[7] ~= '' then
  redis.call('HSET', KEYS[7], ARGV[7], 'taken')
  if redis.call('HGET', KEYS[7], 'live') == ARGV[7] then redis.call('HDEL', KEYS[7], 'live') end
end
local cart_lines = nil
if ARGV[4] ~= '' then cart_lines = cjson.decode(ARGV[4]) end
return {1, apply_buyer({orders = KEYS[2], cart = KEYS[3], touches = KEYS[4], channel = KEYS[5],
  cart_version = KEYS[6]}, ARGV[2], ARGV[3], cart_lines, ARGV[5], ARGV[6])}
