-- Change one line of a buyer's cart, record the touch, count the add.
-- KEYS[1] cart hash (product -> {"qty", "session", "at"})
-- ARGV[1] key prefix   ARGV[2] buyer   ARGV[3] 'add' | 'set' | 'remove'   ARGV[4] product
-- ARGV[5] qty   ARGV[6] session the change was made in ('' if none)   ARGV[7] max qty per line
-- Returns: the cart as a flat HGETALL list
-- Fails: LC not_found (product), bad_request (over the per-line max), sold_out (stock 0),
--        out_of_stock (more than the stock)
local PREFIX = ARGV[1]
--!include lib/keys.lua
--!include lib/util.lua
local buyer, op, product, qty, session = ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5]), ARGV[6]

if op == 'remove' then
  redis.call('HDEL', KEYS[1], product)
  return redis.call('HGETALL', KEYS[1])
end
local stock = redis.call('HGET', k_product(product), 'stock')
if not stock then
  return fail('not_found', {message = 'product does not exist', product = product})
end
local new = qty
local cur = redis.call('HGET', KEYS[1], product)
local old = cur and tonumber(cjson.decode(cur).qty) or 0
if op == 'add' then new = new + old end
if new > tonumber(ARGV[7]) then
  return fail('bad_request', {message = 'at most ' .. ARGV[7] .. ' of one product per cart',
    field = 'qty'})
end
if tonumber(stock) == 0 then
  return fail('sold_out', {message = 'sold out', product = product})
end
if new > tonumber(stock) then
  return fail('out_of_stock', {message = 'not enough stock', product = product,
    available = tonumber(stock)})
end
redis.call('HSET', KEYS[1], product, cjson.encode({qty = new, session = session, at = NOW}))
if session ~= '' then
  redis.call('HSET', k_touches(buyer), product, session .. '|' .. int(NOW))
  if new > old then -- an add to the funnel only when the quantity grows
    local ck = k_counters(session)
    redis.call('HINCRBY', ck, 'adds', 1)
    redis.call('HINCRBY', ck, 'adds:' .. product, 1)
  end
end
return redis.call('HGETALL', KEYS[1])
