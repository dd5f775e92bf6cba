-- A whole one-line order in one script, on a deployment whose keys all live in one
-- Valkey (no cluster): what the saga's steps do (saga.py: begin, reserve, commit, the
-- effects, settle), composed from the same functions, with the units taken at once and
-- nothing left for a sweep — it happens entirely or not at all.
-- Runs only where the saga has nothing in flight for the order: a pending or failed
-- attempt answers 'saga' and the caller drives it through the steps.
-- KEYS[1..3] the room (lib/context.lua: the order's session)   KEYS[4] its counters
-- KEYS[5] order hash   KEYS[6] the bucket's orders stream
-- KEYS[7] product hash   KEYS[8] deals   KEYS[9] rates   KEYS[10] reservations
-- KEYS[11] waitlist holds   KEYS[12] the buyer's order list   KEYS[13] cart
-- KEYS[14] touches   KEYS[15] the buyer's private channel   KEYS[16] cart version
-- KEYS[17] the creator's ledger   KEYS[18] the creator's balance
-- ARGV[1..3] context   ARGV[4] order id   ARGV[5] request fingerprint
-- ARGV[6] the plan JSON (saga.py; one line; its session, if any, is the room's)
-- ARGV[7] reserve mode ('deal' | 'list' | 'external' | 'fixed', see lib/reserve.lua)
-- Returns: {'new' | 'committed', order JSON, JSON of a deal the reserve closed at its
--          ends_at or ''} | {'saga'}
-- Fails: LC conflict (the key was used for a different request) | what reserve.lua fails
--!include lib/context.lua
--!include lib/room.lua
--!include lib/order.lua
--!include lib/effects.lua
local K_PRODUCT, K_DEALS, K_RATES, K_RES, K_HOLDS = KEYS[7], KEYS[8], KEYS[9], KEYS[10], KEYS[11]
--!include lib/reserve.lua
local oid, fp = ARGV[4], ARGV[5]

local st = redis.call('HMGET', KEYS[5], 'status', 'req_hash', 'attempt', 'json')
local attempt = 1
if st[1] then
  if st[1] ~= 'released' and st[2] ~= fp then
    return fail('conflict', {message = 'idempotency key reused with a different request'})
  end
  if st[1] == 'committed' then return {'committed', st[4], ''} end
  if st[1] ~= 'released' then return {'saga'} end
  attempt = tonumber(st[3]) + 1
end

local plan = cjson.decode(ARGV[6])
local want = plan.lines[1]
local function opt(v) if v == nil or v == cjson.null then return nil end return v end
local session = opt(want.session) or ''
local attributed = want.attribution ~= 'none' and session or ''
local got = reserve_line(oid .. '#' .. attempt, plan.buyer, tonumber(want.qty),
  tonumber(opt(want.seen)), ARGV[7], opt(plan.room) or '', attributed, want.product, true)
if got.err then return got end
local l, closed = got[1], got[3]
local line = {product = l.product, qty = l.qty, unit_price = l.unit_price, amount = l.amount,
  discount = 0, commission = l.commission, seller = l.seller, session = opt(want.session),
  attribution = want.attribution, creator = opt(want.creator) or ''}
local sold_room = opt((opt(plan.sold_out_rooms) or {})[l.product]) or ''
local sold_out = '[]'
if l.sold_out and sold_room ~= '' then
  sold_out = '[' .. cjson.encode({sold_room, l.product}) .. ']'
end
local head = {buyer = plan.buyer, currency = plan.currency, source = plan.op,
  external_id = opt(plan.external_id)}
local order, total, sellers, creators = order_json(oid, head, {line})
record_order(KEYS[5], KEYS[6], oid, head, order, total, sellers, creators, sold_out,
  'req_hash', fp, 'attempt', attempt, 'begun_at', NOW)

local touch = opt(plan.touch)
apply_buyer({orders = KEYS[12], cart = KEYS[13], touches = KEYS[14], channel = KEYS[15],
  cart_version = KEYS[16]}, oid, order, nil, touch and touch[1] or '', touch and touch[2] or '')
if attributed ~= '' then
  count_order(KEYS[4], {{product = l.product, qty = l.qty, amount = l.amount, discount = 0,
    commission = l.commission, attribution = want.attribution}})
  if l.commission > 0 and line.creator ~= '' then
    apply_ledger(KEYS[17], KEYS[18], {{order = oid, line = 0, product = l.product,
      session = session, qty = l.qty, amount = l.commission, kind = 'credit'}})
  end
end
if sold_room ~= '' and l.sold_out and redis.call('EXISTS', K_SESSION) == 1 then
  emit_sold_out(l.product)
end
return {'new', order, closed and cjson.encode(closed) or ''}
