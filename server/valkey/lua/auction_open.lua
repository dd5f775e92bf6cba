-- Open an auction on a showcase product of a live session (one open auction per session).
-- KEYS[1..3] room (lib/context.lua)   KEYS[4] the auction hash   KEYS[5] session counters
-- ARGV[1..3] context   ARGV[4] auction id   ARGV[5] caller   ARGV[6] product
-- ARGV[7] start price   ARGV[8] increment   ARGV[9] duration (ms)   ARGV[10] reserve price
-- ARGV[11] sudden death '1' | '0'   ARGV[12] anti-sniping extension (ms)
-- Returns: {the `auction` event data JSON, seq}
-- Fails: LC not_found | forbidden | not_live | conflict (not in the showcase, or an
--        auction is already open)
--!include lib/context.lua
--!include lib/room.lua
--!include lib/auction.lua
local s = redis.call('HMGET', K_SESSION, 'creator', 'status', 'showcase', 'auction')
if not s[1] then return fail('not_found', 'session does not exist') end
if s[1] ~= ARGV[5] then return fail('forbidden', 'only the session creator can start an auction') end
if s[2] ~= 'live' then return fail('not_live', 'session is not live') end
if not in_showcase(s[3], ARGV[6]) then
  return fail('conflict', {message = 'the product is not in this session\'s showcase', product = ARGV[6]})
end
if s[4] and s[4] ~= '' then
  return fail('conflict', {message = 'an auction is already open in this session', auction = s[4]})
end
local a = {id = ARGV[4], product = ARGV[6], status = 'open', start_price = ARGV[7],
  increment = ARGV[8], ends_at = int(NOW + tonumber(ARGV[9])), reserve = ARGV[10],
  sudden_death = ARGV[11], extend_ms = ARGV[12], top_bid = '0', bidder = '', bidder_name = '',
  bids = '0', creator = s[1], created_at = int(NOW)}
local flat = {}
for k, v in pairs(a) do table.insert(flat, k); table.insert(flat, v) end
redis.call('HSET', KEYS[4], unpack(flat))
redis.call('HSET', K_SESSION, 'auction', ARGV[4])
redis.call('HINCRBY', KEYS[5], 'auctions', 1)
local d = auction_event(a)
return {d, emit('auction', d)}
