-- Pin a product (replacing any pin, optionally announcing a deal opened by deal_open.lua)
-- or unpin; the session's creator or one of its moderators (a moderator: without a
-- deal), live only. A deal the node closed before this
-- call (the one being replaced) is announced here, once.
-- KEYS[1..3] room (lib/context.lua)   KEYS[4] pin log   KEYS[5] counters   KEYS[6] presence
-- KEYS[7] moderators set
-- ARGV[1..3] context   ARGV[4] 'pin' | 'unpin'   ARGV[5] caller id
-- ARGV[6] stream_ts_ms or ''   ARGV[7] product JSON (pin) or ''   ARGV[8] product id
-- ARGV[9] the opened deal's JSON or ''   ARGV[10] the closed deal's JSON or ''
-- Returns: {pin JSON or '', seq of the pinned/unpinned event (0: unpin with nothing pinned)}
-- Fails: LC not_found | forbidden | not_live | bad_request
--!include lib/context.lua
--!include lib/room.lua
local K_PIN_LOG, K_COUNTERS, K_PRESENCE = KEYS[4], KEYS[5], KEYS[6]
local action, caller, product = ARGV[4], ARGV[5], ARGV[8]

local s = redis.call('HMGET', K_SESSION, 'creator', 'status', 'started_at', 'showcase', 'pin')
if not s[1] then return fail('not_found', 'session does not exist') end
if s[1] ~= caller and (ARGV[9] ~= '' or redis.call('SISMEMBER', KEYS[7], caller) == 0) then
  return fail('forbidden', 'only the session creator (or a moderator, without a deal) can pin')
end
if s[2] ~= 'live' then return fail('not_live', 'session is not live') end
local sts = ARGV[6] ~= '' and tonumber(ARGV[6]) or (NOW - tonumber(s[3]))
if action == 'pin' and not in_showcase(s[4], product) then
  return fail('bad_request', 'product is not in this session\'s showcase')
end

announce_closed_deal(ARGV[10])

if action == 'unpin' then
  if (s[5] or '') == '' then return {'', 0} end
  local old = cjson.decode(s[5])
  redis.call('HSET', K_SESSION, 'pin', '', 'pin_deal', '', 'pin_deal_product', '')
  redis.call('RPUSH', K_PIN_LOG, '{"op":"unpin","at":' .. int(sts) .. '}')
  return {'', emit('unpinned', '{"product":' .. cjson.encode(old.product.id) ..
    ',"stream_ts_ms":' .. int(sts) .. '}')}
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
local pin = '{"product":' .. ARGV[7] .. ',"pinned_at":' .. int(NOW) .. ',"stream_ts_ms":' ..
  int(sts) .. '}'
redis.call('HSET', K_SESSION, 'pin', pin, 'pin_deal', deal_id,
  'pin_deal_product', deal_id ~= '' and product or '')
redis.call('RPUSH', K_PIN_LOG, '{"op":"pin","at":' .. int(sts) .. ',"product":' ..
  cjson.encode(product) .. ',"pinned_at":' .. int(NOW) .. deal_log .. '}')
local viewers = 0
local flat = redis.call('HVALS', K_PRESENCE)
for i = 1, #flat do
  local n, exp = string.match(flat[i], '^(%d+):(%d+)$')
  if n and tonumber(exp) > NOW then viewers = viewers + tonumber(n) end
end
redis.call('HINCRBY', K_COUNTERS, 'pins', 1)
redis.call('HINCRBY', K_COUNTERS, 'impressions:' .. product, viewers)
local full = string.sub(pin, 1, -2) .. ',"deal":' .. deal_part .. '}'
return {full, emit('pinned', full)}
