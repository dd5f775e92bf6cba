-- Hold one use of a voucher for an order attempt (a saga step beside the product
-- reservations, docs/architecture.md): the voucher's window and session, its total uses
-- (used + held) and the buyer's uses. Idempotent by reservation id; a use released before
-- it was made stays refused (tombstone), like reserve.lua.
-- KEYS[1] voucher hash   KEYS[2] voucher uses hash
-- ARGV[1] reservation id `<order id>#<attempt>`   ARGV[2] buyer   ARGV[3] the order's discount
-- ARGV[4] the session the order is placed in, or ''   ARGV[5] voucher code (for errors)
-- Returns: 'held'
-- Fails: LC not_found | voucher_not_applicable (reason not_started | ended | session)
--        | voucher_used_up | limit_exceeded | conflict with `aborted`
--!include lib/util.lua
local K_VOUCHER, K_USES = KEYS[1], KEYS[2]
local rid, buyer, room, code = ARGV[1], ARGV[2], ARGV[4], ARGV[5]
local prior = redis.call('HGET', K_USES, rid)
if prior then
  if cjson.decode(prior).state == 'released' then
    return fail('conflict', {message = 'this order attempt was abandoned; retry', aborted = true})
  end
  return 'held'
end
local v = redis.call('HMGET', K_VOUCHER, 'code', 'total_uses', 'per_buyer', 'starts_at',
  'ends_at', 'session', 'used', 'held')
if not v[1] then return fail('not_found', {message = 'voucher does not exist', voucher = code}) end
if NOW < tonumber(v[4]) then
  return fail('voucher_not_applicable', {message = 'the voucher has not started', voucher = code,
    reason = 'not_started', starts_at = tonumber(v[4])})
end
if NOW >= tonumber(v[5]) then
  return fail('voucher_not_applicable', {message = 'the voucher has ended', voucher = code,
    reason = 'ended'})
end
if v[6] ~= '' and v[6] ~= room then
  return fail('voucher_not_applicable', {message = 'the voucher is for another session',
    voucher = code, reason = 'session', session = v[6]})
end
if tonumber(v[7]) + tonumber(v[8]) >= tonumber(v[2]) then
  return fail('voucher_used_up', {message = 'the voucher has no uses left', voucher = code})
end
local bought = tonumber(redis.call('HGET', K_USES, 'b:' .. buyer) or '0')
if bought >= tonumber(v[3]) then
  return fail('limit_exceeded', {message = 'you have used this voucher as often as allowed',
    voucher = code, limit = tonumber(v[3]), bought = bought})
end
redis.call('HINCRBY', K_VOUCHER, 'held', 1)
redis.call('HINCRBY', K_USES, 'b:' .. buyer, 1)
redis.call('HSET', K_USES, rid, cjson.encode({state = 'held', buyer = buyer,
  discount = tonumber(ARGV[3]), session = room, at = NOW}))
return 'held'
