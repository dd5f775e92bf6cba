-- Whole one-line orders in one script, on a deployment whose keys all live in one
-- Valkey (no cluster): what the saga's steps do (saga.py: begin, reserve, commit, the
-- effects, settle), composed from the same functions, with the units taken at once and
-- nothing left for a sweep — each order happens entirely or not at all. One call places
-- the N orders a node's loop tick queued (server/cart/order_batches.py), one after the other,
-- each with its own result: they share the call's setup, and the session counters and
-- creator balances they move are added once per (key, field) at the end (lib/effects.lua
-- `defer_bumps`). A failure of one order (a domain error, or a Lua error caught by pcall)
-- is that order's result; its counters are not added. A call of one order moves its
-- counters at once.
-- The key's order record decides first, by the idempotency rule (lib/idempotency.lua, the
-- one implementation; the same answers as order_begin.lua): 'new' places the order here;
-- 'join' (a pending attempt of the same request) and 'release' (a failed attempt, any
-- request) answer 'saga' and the caller drives them through the saga's steps.
-- KEYS[1..18] the first order's keys; order i's are KEYS[18 * (i - 1) + n], n as here:
-- KEYS[1..3] the room (lib/context.lua: the order's session)   KEYS[4] its counters
-- KEYS[5] order hash   KEYS[6] the bucket's orders stream
-- KEYS[7] product hash   KEYS[8] deals   KEYS[9] rates   KEYS[10] reservations
-- KEYS[11] waitlist holds   KEYS[12] the buyer's order list   KEYS[13] cart
-- KEYS[14] touches   KEYS[15] the buyer's private channel   KEYS[16] cart version
-- KEYS[17] the creator's ledger   KEYS[18] the creator's balance
-- ARGV[1..3] context; then 4 per order, order i's at 3 + 4 * (i - 1) + n:
-- n=1 order id   n=2 request fingerprint
-- n=3 the plan JSON (saga.py; one line; its session, if any, is the room's)
-- n=4 reserve mode ('deal' | 'list' | 'external' | 'fixed', see lib/reserve.lua)
-- Returns: 3 entries per order: 'new' | 'committed', order JSON, JSON of a deal the
--          reserve closed at its ends_at or '' | 'saga', '', '' | 'error', the error
--          text ("LC conflict …" when the idempotency rule answers conflict, or what
--          reserve.lua fails), ''
--!include lib/context.lua
--!include lib/room.lua
--!include lib/order.lua
--!include lib/effects.lua
--!include lib/idempotency.lua
local K_PRODUCT, K_DEALS, K_RATES, K_RES, K_HOLDS
--!include lib/reserve.lua
local function opt(v) if v == nil or v == cjson.null then return nil end return v end

-- the strides: server/valkey/scripts.py ORDER_PLACE_KEYS, ORDER_PLACE_ARGS (a test checks)
local KEYS_PER_ORDER, ARGS_PER_ORDER = 18, 4

local function place(i)
  local b, a = KEYS_PER_ORDER * (i - 1), 3 + ARGS_PER_ORDER * (i - 1)
  K_SESSION, K_HISTORY, K_CHANNEL = KEYS[b + 1], KEYS[b + 2], KEYS[b + 3]
  K_PRODUCT, K_DEALS, K_RATES, K_RES, K_HOLDS =
    KEYS[b + 7], KEYS[b + 8], KEYS[b + 9], KEYS[b + 10], KEYS[b + 11]
  local oid, fp = ARGV[a + 1], ARGV[a + 2]

  local st = redis.call('HMGET', KEYS[b + 5], 'status', 'req_hash', 'attempt', 'json')
  local answer = idempotency(st[1], st[2], fp)
  if answer == 'conflict' then return idempotency_conflict() end
  if answer == 'replay' then return {'committed', st[4], ''} end
  if answer ~= 'new' then return {'saga', '', ''} end  -- join or release: the saga's steps
  local attempt = st[1] and tonumber(st[3]) + 1 or 1

  local plan = cjson.decode(ARGV[a + 3])
  local want = plan.lines[1]
  local session = opt(want.session) or ''
  local attributed = want.attribution ~= 'none' and session or ''
  local got = reserve_line(oid .. '#' .. attempt, plan.buyer, tonumber(want.qty),
    tonumber(opt(want.seen)), ARGV[a + 4], opt(plan.room) or '', attributed, want.product, true)
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
  record_order(KEYS[b + 5], KEYS[b + 6], oid, head, order, total, sellers, creators, sold_out,
    'req_hash', fp, 'attempt', attempt, 'begun_at', NOW)

  local touch = opt(plan.touch)
  apply_buyer({orders = KEYS[b + 12], cart = KEYS[b + 13], touches = KEYS[b + 14], channel = KEYS[b + 15],
    cart_version = KEYS[b + 16]}, oid, order, nil, touch and touch[1] or '', touch and touch[2] or '')
  if attributed ~= '' then
    count_order(KEYS[b + 4], {{product = l.product, qty = l.qty, amount = l.amount, discount = 0,
      commission = l.commission, attribution = want.attribution}})
    if l.commission > 0 and line.creator ~= '' then
      apply_ledger(KEYS[b + 17], KEYS[b + 18], {{order = oid, line = 0, product = l.product,
        session = session, qty = l.qty, amount = l.commission, kind = 'credit'}})
    end
  end
  if sold_room ~= '' and l.sold_out and redis.call('EXISTS', K_SESSION) == 1 then
    emit_sold_out(l.product)
  end
  return {'new', order, closed and cjson.encode(closed) or ''}
end

local count = (#ARGV - 3) / ARGS_PER_ORDER
if count == 1 then  -- alone: nothing to share, no bump deferred, a Lua error is the call's
  local r = place(1)
  if r.err then return {'error', r.err, ''} end
  return r
end
local out, batch = {}, {}
for i = 1, count do
  local pending = defer_bumps({})
  local ok, r = pcall(place, i)
  if not ok then
    r = {'error', type(r) == 'table' and (r.err or cjson.encode(r)) or tostring(r), ''}
  elseif r.err then
    r = {'error', r.err, ''}
  else
    merge_bumps(batch, pending)
  end
  out[#out + 1], out[#out + 2], out[#out + 3] = r[1], r[2], r[3]
end
defer_bumps(nil)
flush_bumps(batch)
return out
