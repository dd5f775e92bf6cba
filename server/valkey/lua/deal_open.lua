-- Open a flash deal of one session on one product: its stock moves out of the product's
-- stock into the deal. The session's open deal on this product, if any, closes first
-- (its units count as available for the new one). Idempotent by deal id.
-- The session's own checks (creator, live, showcase) are pin.lua's; a node that opened a
-- deal which pin.lua then refuses closes it again (deal_close.lua).
-- KEYS[1] product hash   KEYS[2] the product's deals hash
-- ARGV[1] session id   ARGV[2] deal id   ARGV[3] price   ARGV[4] stock
-- ARGV[5] per-buyer limit   ARGV[6] ends_at (ms)
-- Returns: {deal JSON, JSON of the deal this closed or ''}
-- Fails: LC not_found | bad_request | out_of_stock
--!include lib/util.lua
local K_PRODUCT, K_DEALS = KEYS[1], KEYS[2]
--!include lib/deal.lua
local sid, id = ARGV[1], ARGV[2]
local price, stock = tonumber(ARGV[3]), tonumber(ARGV[4])
local limit, ends_at = tonumber(ARGV[5]), tonumber(ARGV[6])

local cur = get_deal(sid)
if cur and cur.id == id then return {cjson.encode(cur), ''} end
local p = redis.call('HMGET', K_PRODUCT, 'price', 'stock', 'id')
if not p[1] then return fail('not_found', 'product does not exist') end
if price >= tonumber(p[1]) then return fail('bad_request', 'deal price must be below the list price') end
if ends_at <= NOW then return fail('bad_request', 'deal ends_at must be in the future') end
local returning = 0
if cur and cur.status == 'open' then returning = tonumber(cur.stock_left) end
if stock > tonumber(p[2]) + returning then
  return fail('out_of_stock', 'deal stock exceeds the product\'s available stock')
end
local closed = close_deal(sid)
redis.call('HINCRBY', K_PRODUCT, 'stock', -stock)
redis.call('HINCRBY', K_PRODUCT, 'held', stock)
local d = {id = id, session = sid, product = p[3], price = price,
  stock = stock, stock_left = stock, per_buyer_limit = limit, ends_at = ends_at,
  status = 'open', opened_at = NOW}
put_deal(d)
return {cjson.encode(d), closed and cjson.encode(closed) or ''}
