-- Pin a product (replacing any pin, optionally with a flash deal) or unpin; creator, live only.
-- A new pin or an unpin closes the open deal first (its stock returns to the product).
-- Opening a deal moves its stock out of the product's stock (held by the deal).
-- KEYS[1] session hash
-- ARGV[1..4] context (lib/context.lua)   ARGV[5] session id   ARGV[6] 'pin' | 'unpin'
-- ARGV[7] caller id   ARGV[8] stream_ts_ms or ''   ARGV[9] product id ('' for unpin)
-- ARGV[10] deal JSON {price, stock, per_buyer_limit, ends_at} or ''   ARGV[11] deal id
-- Returns: {pin JSON or '', seq of the pinned/unpinned event (0: unpin with nothing pinned),
--          product of the deal this closed or ''}
--!include lib/context.lua
--!include lib/keys.lua
--!include lib/room.lua

local sid, action, caller = ARGV[5], ARGV[6], ARGV[7]
local s = load_hash(KEYS[1])
if not s then return fail('not_found', 'session does not exist') end
if s.creator ~= caller then return fail('forbidden', 'only the session creator can pin') end
if s.status ~= 'live' then return fail('not_live', 'session is not live') end
local sts = ARGV[8] ~= '' and tonumber(ARGV[8]) or (NOW - tonumber(s.started_at))

local product, p, deal = ARGV[9], nil, nil
if action == 'pin' then
  p = load_hash(k_product(product))
  if not p then return fail('not_found', 'product does not exist') end
  if not in_showcase(s, product) then
    return fail('bad_request', 'product is not in this session\'s showcase')
  end
  if ARGV[10] ~= '' then
    deal = cjson.decode(ARGV[10])
    if deal.price >= tonumber(p.price) then
      return fail('bad_request', 'deal price must be below the list price')
    end
    if deal.ends_at <= NOW then return fail('bad_request', 'deal ends_at must be in the future') end
    -- the deal being replaced may hold stock of this same product: count it as available
    local cur = load_hash(k_deal(sid))
    local returning = 0
    if cur and cur.status == 'open' and cur.product == product then returning = tonumber(cur.stock_left) end
    if deal.stock > tonumber(p.stock) + returning then
      return fail('out_of_stock', 'deal stock exceeds the product\'s available stock')
    end
  end
end

local closed = close_deal(sid)

if action == 'unpin' then
  if s.pin == '' then return {'', 0, closed} end
  local old = cjson.decode(s.pin)
  redis.call('HSET', KEYS[1], 'pin', '', 'pin_deal', '')
  redis.call('RPUSH', k_pin_log(sid), '{"op":"unpin","at":' .. int(sts) .. '}')
  return {'', emit_to(sid, 'unpinned', '{"product":' .. cjson.encode(old.product.id) ..
    ',"stream_ts_ms":' .. int(sts) .. '}'), closed}
end

p = load_hash(k_product(product)) -- re-read: closing a deal may have returned stock
local deal_part = 'null'
if deal then
  local pk = k_product(product)
  redis.call('HINCRBY', pk, 'stock', -deal.stock)
  redis.call('HINCRBY', pk, 'held', deal.stock)
  p.stock = tostring(tonumber(p.stock) - deal.stock)
  local d = {id = ARGV[11], product = product, price = int(deal.price), stock = int(deal.stock),
    stock_left = int(deal.stock), per_buyer_limit = int(deal.per_buyer_limit),
    ends_at = int(deal.ends_at), status = 'open'}
  redis.call('DEL', k_deal(sid))
  redis.call('HSET', k_deal(sid), 'id', d.id, 'product', d.product, 'price', d.price,
    'stock', d.stock, 'stock_left', d.stock_left, 'per_buyer_limit', d.per_buyer_limit,
    'ends_at', d.ends_at, 'status', 'open', 'opened_at', int(NOW))
  redis.call('ZADD', k_open_deals(), d.ends_at, sid)
  deal_part = deal_json(d)
end
local product_json = '{"id":' .. cjson.encode(p.id) .. ',"seller":' .. cjson.encode(p.seller) ..
  ',"title":' .. cjson.encode(p.title) .. ',"price":' .. p.price .. ',"currency":' ..
  cjson.encode(p.currency) .. ',"stock":' .. p.stock .. ',"commission_bps":' .. p.commission_bps ..
  ',"image_url":' .. cjson.encode(p.image_url or '') .. '}'
local pin = '{"product":' .. product_json .. ',"pinned_at":' .. int(NOW) .. ',"stream_ts_ms":' ..
  int(sts) .. '}'
redis.call('HSET', KEYS[1], 'pin', pin, 'pin_deal', deal and ARGV[11] or '')
redis.call('RPUSH', k_pin_log(sid), '{"op":"pin","at":' .. int(sts) .. ',"product":' ..
  cjson.encode(product) .. ',"pinned_at":' .. int(NOW) .. '}')
local ck = k_counters(sid)
redis.call('HINCRBY', ck, 'pins', 1)
redis.call('HINCRBY', ck, 'impressions:' .. product, live_viewers(sid))
local full = string.sub(pin, 1, -2) .. ',"deal":' .. deal_part .. '}'
return {full, emit_to(sid, 'pinned', full), closed}
