-- An order's (or a refund's) effects on one session, once per effect id: the attributed
-- lines' counters and `sold_out` room events for products this order sold out.
-- Order lines: orders (once per order), units, gmv (what was paid), commission, per
-- product, the replay split, and a voucher's discount (voucher_orders once per order,
-- voucher_discount). Refund lines: gmv_refunded, commission_clawed_back, per product.
-- KEYS[1..3] room (lib/context.lua)   KEYS[4] counters   KEYS[5] applied-effects set
-- ARGV[1..3] context   ARGV[4] effect id   ARGV[5] 'order' | 'refund'
-- ARGV[6] lines JSON: order [{product, qty, amount, commission, attribution, discount?}] |
--         refund [{product, amount, clawback}]
-- ARGV[7] JSON array of products sold out in this room by the order
-- Returns: 1 when applied now, 0 when applied before
--!include lib/context.lua
--!include lib/room.lua
--!include lib/effects.lua
local K_COUNTERS = KEYS[4]
if redis.call('SADD', KEYS[5], ARGV[4]) == 0 then return 0 end
local lines = cjson.decode(ARGV[6])
if ARGV[5] == 'order' then count_order(K_COUNTERS, lines) else count_refund(K_COUNTERS, lines) end
if redis.call('EXISTS', K_SESSION) == 1 then
  for _, product in ipairs(cjson.decode(ARGV[7])) do emit_sold_out(product) end
end
return 1
