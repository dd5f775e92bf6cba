-- Open a giveaway of a showcase product in a live session (one open giveaway at a time).
-- KEYS[1..3] room (lib/context.lua)   KEYS[4] the giveaway hash   KEYS[5] session counters
-- ARGV[1..3] context   ARGV[4] giveaway id   ARGV[5] caller   ARGV[6] product
-- ARGV[7] number of winners   ARGV[8] ends_at (ms)   ARGV[9] keyword or ''
-- Returns: {the `giveaway` event data JSON, seq}
-- Fails: LC not_found | forbidden | not_live | bad_request (ends_at not in the future)
--        | conflict (not in the showcase, or a giveaway is already open)
--!include lib/context.lua
--!include lib/room.lua
--!include lib/giveaway.lua
local opened = may_open('giveaway', 'a giveaway', ARGV[5], ARGV[6], function()
  if tonumber(ARGV[8]) <= NOW then
    return fail('bad_request', {message = '`ends_at` must be in the future', field = 'ends_at'})
  end
end)
if not opened[1] then return opened[2] end
local g = {id = ARGV[4], product = ARGV[6], status = 'open', winners = ARGV[7],
  ends_at = ARGV[8], keyword = ARGV[9], entries = '0', creator = opened[1], created_at = int(NOW)}
return store_opened('giveaway', KEYS[4], KEYS[5], g, giveaway_event)
