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
local opened = may_open('auction', 'an auction', ARGV[5], ARGV[6])
if not opened[1] then return opened[2] end
local a = {id = ARGV[4], product = ARGV[6], status = 'open', start_price = ARGV[7],
  increment = ARGV[8], ends_at = int(NOW + tonumber(ARGV[9])), reserve = ARGV[10],
  sudden_death = ARGV[11], extend_ms = ARGV[12], top_bid = '0', bidder = '', bidder_name = '',
  bids = '0', creator = opened[1], created_at = int(NOW)}
return store_opened('auction', KEYS[4], KEYS[5], a, auction_event)
