-- One bid on an open auction, atomically in its session's slot: the minimum (the start
-- price, then the top bid + the increment), the creator's exclusion, anti-sniping (a bid
-- within extend_ms of the end moves the end to extend_ms from now, unless sudden death),
-- the idempotency of (bidder, key), and the `auction` room event.
-- KEYS[1..3] room (lib/context.lua)   KEYS[4] the auction hash   KEYS[5] accepted bids hash
-- ARGV[1..3] context   ARGV[4] bidder   ARGV[5] bidder's display name   ARGV[6] amount
-- ARGV[7] idempotency key
-- Returns: {answer JSON {auction, product, amount, top_bid, ends_at, bids, extended}, the
--           previous top bidder ('' when none, or the bidder itself), 1 when new (0: a
--           retry answered as before)}
-- Fails: LC not_found | forbidden (the creator) | ended (closed, or its end has passed)
--        | conflict {top_bid, min_bid} (below the minimum: e.g. an equal bid that lost
--        the race) | conflict (the key was used for another amount)
--!include lib/context.lua
--!include lib/room.lua
--!include lib/auction.lua
local bidder, amount, field = ARGV[4], tonumber(ARGV[6]), ARGV[4] .. ' ' .. ARGV[7]
local prior = redis.call('HGET', KEYS[5], field)
if prior then
  local p = cjson.decode(prior)
  if tonumber(p.amount) ~= amount then
    return fail('conflict', 'idempotency key reused with a different bid')
  end
  return {prior, '', 0}
end
local a = load_hash(KEYS[4])
if not a then return fail('not_found', 'auction does not exist') end
if bidder == a.creator then return fail('forbidden', 'the creator cannot bid') end
if a.status ~= 'open' or NOW >= tonumber(a.ends_at) then
  return fail('ended', {message = 'the auction has ended', auction = a.id})
end
local top = tonumber(a.top_bid)
local min = top > 0 and top + tonumber(a.increment) or tonumber(a.start_price)
if amount < min then
  return fail('conflict', {message = 'a bid must be at least ' .. int(min),
    top_bid = top > 0 and top or cjson.null, min_bid = min})
end
local previous = a.bidder
local ends_at, extend, extended = tonumber(a.ends_at), tonumber(a.extend_ms), false
if a.sudden_death ~= '1' and ends_at - NOW < extend then
  ends_at, extended = NOW + extend, true
end
a.top_bid, a.bidder, a.bidder_name = int(amount), bidder, ARGV[5]
a.bids, a.ends_at = int(tonumber(a.bids) + 1), int(ends_at)
redis.call('HSET', KEYS[4], 'top_bid', a.top_bid, 'bidder', bidder, 'bidder_name', ARGV[5],
  'bids', a.bids, 'ends_at', a.ends_at)
local answer = '{"auction":' .. cjson.encode(a.id) .. ',"product":' .. cjson.encode(a.product) ..
  ',"amount":' .. int(amount) ..
  ',"top_bid":' .. int(amount) .. ',"ends_at":' .. a.ends_at .. ',"bids":' .. a.bids ..
  ',"extended":' .. tostring(extended) .. '}'
redis.call('HSET', KEYS[5], field, answer)
emit('auction', auction_event(a))
return {answer, previous, 1}
