-- Close an auction once, in its session's slot; any node may ask any number of times.
--   'due'    an open auction past its end stops taking bids: with no bid it closes
--            `no_bids`, under the reserve `reserve_not_met` (announced now); otherwise it
--            becomes `closing` with its winner fixed, and the caller places the winner's
--            order (saga, order id derived from the auction id) and then settles it.
--   'settle' a `closing` auction closes with the outcome its order record decided
--            (`sold` with the order, or `unsold`): announced once, counted once.
-- KEYS[1..3] room (lib/context.lua)   KEYS[4] the auction hash   KEYS[5] session counters
-- ARGV[1..3] context   ARGV[4] 'due' | 'settle'   ARGV[5] outcome 'sold' | 'unsold'
-- ARGV[6] the order id ('' when unsold)
-- Returns: {state, auction JSON (every field of the hash)}; state is 'absent', 'open' (not
--          due yet: see ends_at), 'closing' (place the order) or 'closed' (done before or
--          now; 'closed_now' when this call closed it)
--!include lib/context.lua
--!include lib/room.lua
--!include lib/auction.lua
local a = load_hash(KEYS[4])
if not a then return {'absent', '{}'} end
local function finish(outcome, order)
  a.status, a.outcome, a.order = 'closed', outcome, order
  redis.call('HSET', KEYS[4], 'status', 'closed', 'outcome', outcome, 'order', order,
    'closed_at', int(NOW))
  if redis.call('HGET', K_SESSION, 'auction') == a.id then
    redis.call('HSET', K_SESSION, 'auction', '')
  end
  if outcome == 'sold' then
    redis.call('HINCRBY', KEYS[5], 'auctions_sold', 1)
    redis.call('HINCRBY', KEYS[5], 'auction_revenue', tonumber(a.top_bid))
  end
  emit('auction', auction_event(a))
  return {'closed_now', cjson.encode(a)}
end
if a.status == 'closed' then return {'closed', cjson.encode(a)} end
if ARGV[4] == 'due' then
  if a.status == 'closing' then return {'closing', cjson.encode(a)} end
  if NOW < tonumber(a.ends_at) then return {'open', cjson.encode(a)} end
  local top = tonumber(a.top_bid)
  if top == 0 then return finish('no_bids', '') end
  if top < tonumber(a.reserve or '0') then return finish('reserve_not_met', '') end
  a.status = 'closing'
  redis.call('HSET', KEYS[4], 'status', 'closing')
  return {'closing', cjson.encode(a)}
end
if a.status ~= 'closing' then return {a.status, cjson.encode(a)} end
return finish(ARGV[5], ARGV[6])
