-- Commit an order attempt whose every line is reserved (step 2 of a purchase): the order
-- record, its entry in the bucket's orders stream, and the saga entry that keeps its
-- remaining steps (reservations taken, buyer, sessions, creators) until they are done.
-- All or nothing with order_step.lua 'abort': whichever comes first decides the attempt.
-- KEYS[1] order hash   KEYS[2] the bucket's saga index   KEYS[3] the bucket's orders stream
-- ARGV[1] order id   ARGV[2] attempt
-- ARGV[3] order JSON head {buyer, currency, source, external_id?, total?, voucher?}
--         (total: what the buyer saw after any discount, or null)
-- ARGV[4] lines JSON: [{product, qty, unit_price, amount, discount?, session, attribution,
--         commission, seller, creator}] from reserve.lua, the voucher step and the plan;
--         the order's total is the sum of amount - discount (what the buyer pays)
-- ARGV[5] when the saga should redo the remaining steps if they are not done (ms)
-- ARGV[6] JSON [[session, product], …]: products this order sold out, and in which room
-- Returns: {'new' | 'committed', order JSON}
-- Fails: LC conflict (the total changed, or the attempt was abandoned)
--!include lib/util.lua
--!include lib/order.lua
local st = redis.call('HMGET', KEYS[1], 'status', 'attempt', 'json')
if st[1] == 'committed' then return {'committed', st[3]} end
if st[1] ~= 'pending' or st[2] ~= ARGV[2] then
  return fail('conflict', {message = 'the order attempt was abandoned; retry'})
end
local head = cjson.decode(ARGV[3])
local oid = ARGV[1]
local order, total, sellers, creators = order_json(oid, head, cjson.decode(ARGV[4]))
if head.total ~= nil and head.total ~= cjson.null and tonumber(head.total) ~= total then
  redis.call('HSET', KEYS[1], 'status', 'failed')
  return fail('conflict', {message = 'the total changed', total = total})
end
record_order(KEYS[1], KEYS[3], oid, head, order, total, sellers, creators, ARGV[6])
redis.call('ZADD', KEYS[2], tonumber(ARGV[5]), 'o:' .. oid)
return {'new', order}
