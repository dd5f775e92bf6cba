-- A committed order's effects (`--!include lib/effects.lua` after lib/util.lua): the
-- buyer's, a session's counters and a creator's ledger. buyer_effects.lua,
-- session_effects.lua and ledger_apply.lua apply each once per effect id in its own slot
-- (a saga step); order_place.lua applies them with the order itself.

-- The buyer's order list, the buy_now touch, the cart lines bought (each only if
-- unchanged since checkout read it: `cart_lines` {product: line JSON as read} or nil) and
-- the private `order` (and emptied `cart`) events. k: {orders, cart, touches, channel,
-- cart_version}. Returns the cart's version when this changed the cart and left lines in
-- it (the node publishes that cart), else 0.
local function apply_buyer(k, oid, order, cart_lines, touch_product, touch_session)
  redis.call('LPUSH', k.orders, oid)
  if touch_product ~= '' then touch(k.touches, touch_product, touch_session) end
  redis.call('SPUBLISH', k.channel, '{"t":"order","ts":' .. int(NOW) .. ',"d":' .. order .. '}')
  local changed = false
  for product, line in pairs(cart_lines or {}) do
    if redis.call('HGET', k.cart, product) == line then
      redis.call('HDEL', k.cart, product)
      changed = true
    end
  end
  if not changed then return 0 end
  local v = redis.call('INCR', k.cart_version)
  if redis.call('EXISTS', k.cart) == 1 then return v end
  redis.call('SPUBLISH', k.channel, '{"t":"cart","ts":' .. int(NOW) ..
    ',"d":{"lines":[],"total":0,"v":' .. v .. '}}')
  return 0
end

-- Counter moves to add later (order_place.lua: once per key and field for all the orders
-- of a call), or nil: `bump` adds at once. {key, ..., [key] = {field, ..., [field] = n}}
local DEFERRED = nil

-- Defer the `bump`s from here on into `t` (nil: add them at once again). Returns t.
local function defer_bumps(t)
  DEFERRED = t
  return t
end

local function add_bump(t, key, field, n)
  local fields = t[key]
  if not fields then fields = {}; t[key] = fields; t[#t + 1] = key end
  if fields[field] == nil then fields[#fields + 1] = field; fields[field] = n
  else fields[field] = fields[field] + n end
end

-- Add the moves deferred in `from` to those deferred in `into`.
local function merge_bumps(into, from)
  for _, key in ipairs(from) do
    for _, field in ipairs(from[key]) do add_bump(into, key, field, from[key][field]) end
  end
end

-- Apply deferred moves: one HINCRBY per key and field, in the order they were first moved.
local function flush_bumps(t)
  for _, key in ipairs(t) do
    for _, field in ipairs(t[key]) do
      local n = t[key][field]
      if n ~= 0 then redis.call('HINCRBY', key, field, n) end
    end
  end
end

-- Add n to a counter field (a counter never moved reads 0), now or deferred.
local function bump(k_counters, field, n)
  if n == 0 then return end
  if DEFERRED then add_bump(DEFERRED, k_counters, field, n)
  else redis.call('HINCRBY', k_counters, field, n) end
end

-- A session's counters for an order's attributed lines [{product, qty, amount, commission,
-- attribution, discount?}] (amount: what was paid): orders (once), units, gmv, commission,
-- per product, the replay split, a voucher's discount (voucher_orders once).
local function count_order(k_counters, lines)
  local function add(field, n) bump(k_counters, field, n) end
  if #lines > 0 then add('orders', 1) end
  local replay, discounted = false, false
  for _, l in ipairs(lines) do
    local discount = tonumber(l.discount or 0)
    if discount > 0 then
      if not discounted then discounted = true; add('voucher_orders', 1) end
      add('voucher_discount', discount); add('voucher_discount:' .. l.product, discount)
    end
    local qty, amount, commission = tonumber(l.qty), tonumber(l.amount), tonumber(l.commission)
    add('units', qty); add('gmv', amount); add('commission', commission)
    add('orders:' .. l.product, 1); add('units:' .. l.product, qty)
    add('gmv:' .. l.product, amount); add('commission:' .. l.product, commission)
    if l.attribution == 'replay' then
      if not replay then replay = true; add('replay_orders', 1) end
      add('replay_units', qty); add('replay_gmv', amount); add('replay_commission', commission)
    end
  end
end

-- A session's counters for a refund's lines [{product, amount, clawback}]: gmv_refunded,
-- commission_clawed_back, in total and per product.
local function count_refund(k_counters, lines)
  for _, l in ipairs(lines) do
    local amount, claw = tonumber(l.amount), tonumber(l.clawback)
    bump(k_counters, 'gmv_refunded', amount)
    bump(k_counters, 'commission_clawed_back', claw)
    bump(k_counters, 'gmv_refunded:' .. l.product, amount)
    bump(k_counters, 'commission_clawed_back:' .. l.product, claw)
  end
end

-- A creator's ledger entries [{order, line, product, session, qty, amount, kind}] (amount
-- signed: credits positive) and the balance moved by their sum.
local function apply_ledger(k_ledger, k_balance, entries)
  local sum = 0
  for _, e in ipairs(entries) do
    local amount = tonumber(e.amount)
    sum = sum + amount
    redis.call('RPUSH', k_ledger, '{"order":' .. cjson.encode(e.order) .. ',"line":' .. int(e.line) ..
      ',"product":' .. cjson.encode(e.product) .. ',"session":' .. cjson.encode(e.session) ..
      ',"qty":' .. int(e.qty) .. ',"amount":' .. int(amount) .. ',"kind":"' .. e.kind ..
      '","status":"pending","at":' .. int(NOW) .. '}')
  end
  bump(k_balance, 'balance', sum)
end
