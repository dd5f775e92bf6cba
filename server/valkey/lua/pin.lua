-- Pin a product (replacing any pin, optionally announcing a deal opened by deal_open.lua)
-- or unpin; the session's creator or one of its moderators (a moderator: without a
-- deal), live only. A deal the node closed before this
-- call (the one being replaced) is announced here, once.
-- KEYS[1..3] room (lib/context.lua)   KEYS[4] pin log   KEYS[5] counters
-- KEYS[6] moderators set   KEYS[7] the product hash (only with ARGV[7] '')
-- ARGV[1..3] context   ARGV[4] 'pin' | 'unpin', or 'may_pin' | 'may_deal' | 'may_unpin':
--         only the checks, nothing written (asked before a deal opens or closes in its
--         product's slot, so that this script alone decides who may pin)   ARGV[5] caller id
-- ARGV[6] stream_ts_ms or ''   ARGV[8] product id
-- ARGV[7] product JSON (pin), or '' (unpin; or a pin that reads the product from KEYS[7]
--         itself: one Valkey only, the product's hash tag is not the session's)
-- ARGV[9] the opened deal's JSON or ''   ARGV[10] the closed deal's JSON or ''
-- Returns: {pin JSON or '', seq of the pinned/unpinned event (0: unpin with nothing pinned;
--          -1: a pin reading its product found a deal pinned — nothing written: the caller
--          closes that deal in its product's slot and pins again with the product JSON)}
-- Fails: LC not_found | forbidden | not_live | bad_request
--!include lib/context.lua
--!include lib/room.lua
local K_PIN_LOG, K_COUNTERS = KEYS[4], KEYS[5]
local action, caller, product = ARGV[4], ARGV[5], ARGV[8]

local s = redis.call('HMGET', K_SESSION, 'creator', 'status', 'started_at', 'showcase', 'pin',
  'pin_deal', 'epoch', 'seq')
if not s[1] then return fail('not_found', 'session does not exist') end
if s[1] ~= caller then
  if ARGV[9] ~= '' or action == 'may_deal' then
    return fail('forbidden', 'only the session creator can run a deal')
  end
  if redis.call('SISMEMBER', KEYS[6], caller) == 0 then
    return fail('forbidden', 'only the session creator or its moderators can pin')
  end
end
if s[2] ~= 'live' then return fail('not_live', 'session is not live') end
local sts = ARGV[6] ~= '' and tonumber(ARGV[6]) or (NOW - tonumber(s[3]))
local product_json = ARGV[7]
if action == 'pin' and product_json == '' then
  local p = redis.call('HMGET', KEYS[7], 'id', 'seller', 'title', 'price', 'currency', 'stock',
    'commission_bps', 'image_url')
  if not p[1] then
    return fail('not_found', {message = "product '" .. product .. "' does not exist",
      product = product})
  end
  if (s[6] or '') ~= '' then return {'', -1} end
  product_json = '{"id":' .. cjson.encode(p[1]) .. ',"seller":' .. cjson.encode(p[2]) ..
    ',"title":' .. cjson.encode(p[3]) .. ',"price":' .. p[4] .. ',"currency":' ..
    cjson.encode(p[5]) .. ',"stock":' .. p[6] .. ',"commission_bps":' .. p[7] ..
    ',"image_url":' .. cjson.encode(p[8] or '') .. '}'
end
if action ~= 'unpin' and action ~= 'may_unpin' and not in_showcase(s[4], product) then
  return fail('bad_request', 'product is not in this session\'s showcase')
end
if action == 'may_pin' or action == 'may_deal' or action == 'may_unpin' then return {'', 0} end

local announced = announce_closed_deal(ARGV[10])
if announced ~= 0 then s[7], s[8] = s[7] or FRESH_EPOCH, announced end  -- that event's seq

if action == 'unpin' then
  if (s[5] or '') == '' then return {'', 0} end
  local old = cjson.decode(s[5])
  redis.call('RPUSH', K_PIN_LOG, '{"op":"unpin","at":' .. int(sts) .. '}')
  return {'', emit_after('unpinned', '{"product":' .. cjson.encode(old.product.id) ..
    ',"stream_ts_ms":' .. int(sts) .. '}', s[7], s[8], 'pin', '', 'pin_deal', '',
    'pin_deal_product', '')}
end

local deal_part, deal_id, deal_log = 'null', '', ''
if ARGV[9] ~= '' then
  local d = cjson.decode(ARGV[9])
  deal_id = d.id
  deal_log = ',"deal_price":' .. int(d.price)
  deal_part = '{"price":' .. int(d.price) .. ',"stock_left":' .. int(d.stock_left) ..
    ',"per_buyer_limit":' .. int(d.per_buyer_limit) .. ',"ends_at":' .. int(d.ends_at) ..
    ',"status":"open"}'
end
local pin = '{"product":' .. product_json .. ',"pinned_at":' .. int(NOW) .. ',"stream_ts_ms":' ..
  int(sts) .. '}'
redis.call('RPUSH', K_PIN_LOG, '{"op":"pin","at":' .. int(sts) .. ',"product":' ..
  cjson.encode(product) .. ',"pinned_at":' .. int(NOW) .. deal_log .. '}')
-- the audience the last counters tick counted (room_tick.lua: the one reader of presence)
local viewers = tonumber(redis.call('HGET', K_COUNTERS, 'viewers') or '0')
redis.call('HINCRBY', K_COUNTERS, 'pins', 1)
redis.call('HINCRBY', K_COUNTERS, 'impressions:' .. product, viewers)
local full = string.sub(pin, 1, -2) .. ',"deal":' .. deal_part .. '}'
return {full, emit_after('pinned', full, s[7], s[8], 'pin', pin, 'pin_deal', deal_id,
  'pin_deal_product', deal_id ~= '' and product or '')}
