-- Hold one order line's units in its product's slot (step 1 of a purchase, see
-- docs/architecture.md): price confirmation, the session's open deal (price, deal stock,
-- per-buyer limit) or list price and stock, and the line's commission. Idempotent by
-- reservation id; a reservation released before it was made stays refused. A buyer holding
-- a waitlist unit (lib/waitlist.lua) buys it first: one unit of the line comes from the hold.
-- KEYS[1] product hash   KEYS[2] deals hash   KEYS[3] rates hash   KEYS[4] reservations
-- KEYS[5] waitlist holds hash
-- ARGV[1] reservation id `<order id>#<attempt>`   ARGV[2] buyer   ARGV[3] qty
-- ARGV[4] the unit price the buyer saw, or ''   ARGV[5] mode: 'deal' (buy_now: the room's
-- open deal applies) | 'list' (checkout) | 'external' (ARGV[4] is the unit price; no stock)
-- | 'fixed' (a prize: ARGV[4] is the unit price, from the product's stock; deals ignored)
-- ARGV[6] the room (session) whose deal applies, or ''
-- ARGV[7] the attributed session (its live-exclusive rate applies), or '' (no commission)
-- ARGV[8] product id (for error details)
-- Returns: {line JSON {product, qty, unit_price, amount, commission, rate, seller, deal,
--           hold, sold_out}, JSON of a deal this call closed at its ends_at or ''}
--          (rate: the commission rate applied, bps; hold: a waitlist unit was used)
-- Fails: LC not_found | conflict | deal_ended | sold_out | out_of_stock | limit_exceeded
--        | conflict with `aborted` (released before: its order attempt was abandoned)
--!include lib/util.lua
local K_PRODUCT, K_DEALS, K_RATES, K_RES, K_HOLDS = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
--!include lib/reserve.lua
local got = reserve_line(ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5],
  ARGV[6], ARGV[7], ARGV[8], false)
if got.err then return got end
return {got[2], got[3] and cjson.encode(got[3]) or ''}
