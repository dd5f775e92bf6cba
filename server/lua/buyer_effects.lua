-- A committed order's effects on its buyer, once: the buyer's order list, the cart lines
-- it bought (each only if unchanged since checkout read it), the buy_now touch, and the
-- private `order` (and emptied `cart`) events to every connection of the buyer.
-- KEYS[1] the buyer's applied-effects set   KEYS[2] order list   KEYS[3] cart
-- KEYS[4] touches   KEYS[5] the buyer's private channel (sharded pub/sub)
-- KEYS[6] the cart's version counter
-- ARGV[1] effect id `o:<order id>`   ARGV[2] order id   ARGV[3] order JSON
-- ARGV[4] cart lines bought: JSON {product: line JSON as read}, or '' (not a checkout)
-- ARGV[5] touch product or ''   ARGV[6] touch value `<session>|<ms>`
-- Returns: {1 when applied now (0: applied before), the cart's version when this changed
--          the cart and left lines in it (the node publishes that cart), else 0}
--!include lib/util.lua
if redis.call('SADD', KEYS[1], ARGV[1]) == 0 then return {0, 0} end
redis.call('LPUSH', KEYS[2], ARGV[2])
if ARGV[5] ~= '' then redis.call('HSET', KEYS[4], ARGV[5], ARGV[6]) end
redis.call('SPUBLISH', KEYS[5], '{"t":"order","ts":' .. int(NOW) .. ',"d":' .. ARGV[3] .. '}')
local changed = 0
if ARGV[4] ~= '' then
  for product, line in pairs(cjson.decode(ARGV[4])) do
    if redis.call('HGET', KEYS[3], product) == line then
      redis.call('HDEL', KEYS[3], product)
      changed = 1
    end
  end
end
if changed == 1 then
  local v = redis.call('INCR', KEYS[6])
  if redis.call('EXISTS', KEYS[3]) == 1 then return {1, v} end
  redis.call('SPUBLISH', KEYS[5], '{"t":"cart","ts":' .. int(NOW) ..
    ',"d":{"lines":[],"total":0,"v":' .. v .. '}}')
end
return {1, 0}
