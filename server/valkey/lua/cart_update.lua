-- Change one line of a buyer's cart and record the touch.
-- The product's stock is read by the node just before (the cart is not a reservation:
-- checkout checks stock again, atomically per product).
-- KEYS[1] cart hash (product -> {"qty", "session", "at"})   KEYS[2] touches hash
-- KEYS[3] the cart's version counter (raised by every change)
-- ARGV[1] 'add' | 'set' | 'remove'   ARGV[2] product   ARGV[3] qty
-- ARGV[4] session the change was made in ('' if none)   ARGV[5] max qty per line
-- ARGV[6] the product's available stock ('' when the product does not exist)
-- Returns: {the cart as a flat HGETALL list, 1 when the line's quantity grew else 0,
--          the cart's version after this change}
-- Fails: LC not_found (product), bad_request (over the per-line max), sold_out (stock 0),
--        out_of_stock (more than the stock)
--!include lib/util.lua
local op, product, qty, session = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
if op == 'remove' then
  redis.call('HDEL', KEYS[1], product)
  return {redis.call('HGETALL', KEYS[1]), 0, redis.call('INCR', KEYS[3])}
end
if ARGV[6] == '' then
  return fail('not_found', {message = 'product does not exist', product = product})
end
local stock = tonumber(ARGV[6])
local cur = redis.call('HGET', KEYS[1], product)
local old = cur and tonumber(cjson.decode(cur).qty) or 0
local new = op == 'add' and qty + old or qty
if new > tonumber(ARGV[5]) then
  return fail('bad_request', {message = 'at most ' .. ARGV[5] .. ' of one product per cart',
    field = 'qty'})
end
if stock == 0 then return fail('sold_out', {message = 'sold out', product = product}) end
if new > stock then
  return fail('out_of_stock', {message = 'not enough stock', product = product, available = stock})
end
redis.call('HSET', KEYS[1], product, cjson.encode({qty = new, session = session, at = NOW}))
touch(KEYS[2], product, session)
return {redis.call('HGETALL', KEYS[1]), new > old and 1 or 0, redis.call('INCR', KEYS[3])}
