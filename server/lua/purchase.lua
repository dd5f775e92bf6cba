-- Place one order atomically: idempotency, price and stock (or deal) checks, stock
-- decrement, the order record, attributed session counters, commission ledger credits,
-- cart clearing, `sold_out` room events, the durable orders stream entry and the buyer's
-- private `order` (and emptied `cart`) events.
-- KEYS[1] idempotency key (per buyer: the request's idempotency_key or external_id)
-- ARGV[1..4] context (lib/context.lua)
-- ARGV[5] request JSON:
--   op          'buy_now' | 'checkout' | 'external'
--   order_id, buyer, currency, req_hash (fingerprint of the request), idem_ttl_s
--   room        session id of the buyer's connection ('' if none): deals and sold_out events
--   total       what the buyer saw as the order total, or null
--   lines       buy_now / external: [{product, qty, price}] (price: seen / unit_price, or null)
--               checkout: null (the cart is read here, atomically)
--   attribution {product: {session, kind, creator}}, kind: direct | replay | indirect | none
--   touch       product id whose touch (room, now) to record (buy_now), or null
-- Returns: {'new' | 'replayed', order JSON}
-- Fails: LC conflict|not_live|sold_out|out_of_stock|limit_exceeded|deal_ended|not_found|bad_request
--!include lib/context.lua
--!include lib/keys.lua
--!include lib/room.lua

local req = cjson.decode(ARGV[5])

-- 1. idempotency --------------------------------------------------------------
local seen = redis.call('GET', KEYS[1])
if seen then
  local hash, oid = string.match(seen, '^([^|]*)|(.*)$')
  if hash ~= req.req_hash then
    return fail('conflict', {message = 'idempotency key reused with a different request'})
  end
  return {'replayed', redis.call('HGET', k_order(oid), 'json')}
end

-- 2. the lines ------------------------------------------------------------------
local lines = {}
local cart_sessions = {}
if req.op == 'checkout' then
  local flat = redis.call('HGETALL', k_cart(req.buyer))
  if #flat == 0 then return fail('bad_request', {message = 'the cart is empty'}) end
  for i = 1, #flat, 2 do
    local line = cjson.decode(flat[i + 1])
    table.insert(lines, {product = flat[i], qty = tonumber(line.qty)})
    cart_sessions[flat[i]] = line.session or ''
  end
  table.sort(lines, function(a, b) return a.product < b.product end)
else
  for _, l in ipairs(req.lines) do
    table.insert(lines, {product = l.product, qty = tonumber(l.qty), seen = l.price})
  end
end

-- 3. checks (no writes but closing an expired deal) -----------------------------
local room = req.room or ''
local room_session = nil
if req.op == 'buy_now' then
  room_session = load_hash(k_session(room))
  if not room_session then return fail('not_found', {message = 'session does not exist'}) end
  if room_session.status == 'scheduled' then
    return fail('not_live', {message = 'session has not started'})
  end
end
local total = 0
for _, l in ipairs(lines) do
  local a = req.attribution[l.product]
  if not a then return fail('conflict', {message = 'the cart changed; retry', product = l.product}) end
  l.attr = a
  local p = load_hash(k_product(l.product))
  if not p then return fail('not_found', {message = 'product does not exist', product = l.product}) end
  l.p = p
  l.list_price = tonumber(p.price)
  if req.op == 'external' then
    l.unit = tonumber(l.seen)
  elseif req.op == 'checkout' then
    l.unit = l.list_price
    if tonumber(p.stock) < l.qty then
      return fail('out_of_stock', {message = 'not enough stock for ' .. l.product,
        product = l.product, available = tonumber(p.stock)})
    end
  else
    local d = load_hash(k_deal(room))
    if d and d.status == 'open' and d.product == l.product and tonumber(d.ends_at) <= NOW then
      close_deal(room)
      d = load_hash(k_deal(room))
      l.p = load_hash(k_product(l.product))
    end
    if d and d.status == 'open' and d.product == l.product then
      l.deal = d
      l.unit = tonumber(d.price)
      if l.seen ~= nil and l.seen ~= cjson.null and tonumber(l.seen) ~= l.unit then
        return fail('conflict', {message = 'the price changed', price = l.unit})
      end
      local left = tonumber(d.stock_left)
      if left == 0 then return fail('sold_out', {message = 'the deal is sold out', product = l.product}) end
      if left < l.qty then
        return fail('out_of_stock', {message = 'not enough deal stock', product = l.product, available = left})
      end
      local bought = tonumber(redis.call('HGET', k_deal_buyers(room, d.id), req.buyer) or '0')
      if bought + l.qty > tonumber(d.per_buyer_limit) then
        return fail('limit_exceeded', {message = 'over the per-buyer limit of this deal',
          limit = tonumber(d.per_buyer_limit), bought = bought})
      end
    else
      l.unit = l.list_price
      if l.seen ~= nil and l.seen ~= cjson.null and tonumber(l.seen) ~= l.unit then
        if d and d.product == l.product and tonumber(d.price) == tonumber(l.seen) then
          return fail('deal_ended', {message = 'the deal has ended', price = l.unit})
        end
        return fail('conflict', {message = 'the price changed', price = l.unit})
      end
      local stock = tonumber(l.p.stock)
      if stock == 0 then return fail('sold_out', {message = 'sold out', product = l.product}) end
      if stock < l.qty then
        return fail('out_of_stock', {message = 'not enough stock', product = l.product, available = stock})
      end
    end
  end
  l.amount = l.unit * l.qty
  total = total + l.amount
end
if req.total ~= nil and req.total ~= cjson.null and tonumber(req.total) ~= total then
  return fail('conflict', {message = 'the total changed', total = total})
end

-- 4. writes ----------------------------------------------------------------------
local out_lines = {}
local creators = {}
local sessions_counted = {}
local replay_counted = {}
local sellers = {}
for i, l in ipairs(lines) do
  local pk = k_product(l.product)
  local sold_out_room = nil
  if req.op ~= 'external' then
    redis.call('HINCRBY', pk, 'sold', l.qty)
    if l.deal then
      local left = redis.call('HINCRBY', k_deal(room), 'stock_left', -l.qty)
      redis.call('HINCRBY', k_deal_buyers(room, l.deal.id), req.buyer, l.qty)
      redis.call('HINCRBY', pk, 'held', -l.qty)
      if left == 0 then sold_out_room = room end
    else
      local left = redis.call('HINCRBY', pk, 'stock', -l.qty)
      if left == 0 then
        sold_out_room = room ~= '' and room or (cart_sessions[l.product] or '')
      end
    end
  end
  if sold_out_room and sold_out_room ~= '' then
    emit_to(sold_out_room, 'sold_out', '{"product":' .. cjson.encode(l.product) .. '}')
  end
  local a = l.attr
  local commission = 0
  local session = cjson.null
  if a.kind ~= 'none' then
    session = a.session
    local rate = tonumber(l.p.commission_bps)
    local override = tonumber(redis.call('HGET', k_rates(a.session), l.product) or '0')
    if override > rate then rate = override end
    commission = muldiv(l.amount, rate, 10000)
    local ck = k_counters(a.session)
    if not sessions_counted[a.session] then
      sessions_counted[a.session] = true
      redis.call('HINCRBY', ck, 'orders', 1)
    end
    redis.call('HINCRBY', ck, 'units', l.qty)
    redis.call('HINCRBY', ck, 'gmv', l.amount)
    redis.call('HINCRBY', ck, 'commission', commission)
    redis.call('HINCRBY', ck, 'orders:' .. l.product, 1)
    redis.call('HINCRBY', ck, 'units:' .. l.product, l.qty)
    redis.call('HINCRBY', ck, 'gmv:' .. l.product, l.amount)
    redis.call('HINCRBY', ck, 'commission:' .. l.product, commission)
    if a.kind == 'replay' then
      if not replay_counted[a.session] then
        replay_counted[a.session] = true
        redis.call('HINCRBY', ck, 'replay_orders', 1)
      end
      redis.call('HINCRBY', ck, 'replay_units', l.qty)
      redis.call('HINCRBY', ck, 'replay_gmv', l.amount)
      redis.call('HINCRBY', ck, 'replay_commission', commission)
    end
    if commission > 0 then
      redis.call('RPUSH', k_ledger(a.creator), cjson.encode({order = req.order_id, line = i - 1,
        product = l.product, session = a.session, qty = l.qty, amount = commission,
        kind = 'credit', status = 'pending', at = NOW}))
      redis.call('HINCRBY', k_balance(a.creator), 'balance', commission)
    end
  end
  sellers[l.p.seller] = true
  out_lines[i] = '{"product":' .. cjson.encode(l.product) .. ',"qty":' .. int(l.qty) ..
    ',"unit_price":' .. int(l.unit) .. ',"amount":' .. int(l.amount) .. ',"session":' ..
    cjson.encode(session) .. ',"attribution":"' .. a.kind .. '","commission":' .. int(commission) ..
    ',"seller":' .. cjson.encode(l.p.seller) .. '}'
  creators[i] = a.creator or ''
end
if req.touch ~= nil and req.touch ~= cjson.null and room ~= '' then
  redis.call('HSET', k_touches(req.buyer), req.touch, room .. '|' .. int(NOW))
end
if req.op == 'checkout' then redis.call('DEL', k_cart(req.buyer)) end

local order = '{"id":' .. cjson.encode(req.order_id) .. ',"buyer":' .. cjson.encode(req.buyer) ..
  ',"currency":' .. cjson.encode(req.currency) .. ',"total":' .. int(total) .. ',"lines":[' ..
  table.concat(out_lines, ',') .. '],"created_at":' .. int(NOW) .. ',"source":"' .. req.op .. '"' ..
  (req.external_id and (',"external_id":' .. cjson.encode(req.external_id)) or '') .. '}'
local seller_list = {}
for s, _ in pairs(sellers) do table.insert(seller_list, s) end
redis.call('HSET', k_order(req.order_id), 'json', order, 'buyer', req.buyer,
  'sellers', cjson.encode(seller_list), 'creators', cjson.encode(creators),
  'in_stream', req.op == 'external' and '0' or '1')
redis.call('SET', KEYS[1], req.req_hash .. '|' .. req.order_id, 'EX', req.idem_ttl_s)
redis.call('LPUSH', k_user_orders(req.buyer), req.order_id)
redis.call('XADD', k_orders_stream(), '*', 'type', 'order', 'order', req.order_id,
  'buyer', req.buyer, 'total', int(total), 'currency', req.currency, 'at', int(NOW), 'json', order)
-- the buyer's connections, on every node, hear about the order (and the emptied cart)
local ch = k_user_channel(req.buyer)
redis.call('PUBLISH', ch, '{"t":"order","ts":' .. int(NOW) .. ',"d":' .. order .. '}')
if req.op == 'checkout' then
  redis.call('PUBLISH', ch, '{"t":"cart","ts":' .. int(NOW) .. ',"d":{"lines":[],"total":0}}')
end
return {'new', order}
