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
local s = redis.call('HMGET', K_SESSION, 'creator', 'status', 'showcase', 'giveaway')
if not s[1] then return fail('not_found', 'session does not exist') end
if s[1] ~= ARGV[5] then return fail('forbidden', 'only the session creator can start a giveaway') end
if s[2] ~= 'live' then return fail('not_live', 'session is not live') end
if tonumber(ARGV[8]) <= NOW then
  return fail('bad_request', {message = '`ends_at` must be in the future', field = 'ends_at'})
end
if not in_showcase(s[3], ARGV[6]) then
  return fail('conflict', {message = 'the product is not in this session\'s showcase', product = ARGV[6]})
end
if s[4] and s[4] ~= '' then
  return fail('conflict', {message = 'a giveaway is already open in this session', giveaway = s[4]})
end
local g = {id = ARGV[4], product = ARGV[6], status = 'open', winners = ARGV[7],
  ends_at = ARGV[8], keyword = ARGV[9], entries = '0', creator = s[1], created_at = int(NOW)}
local flat = {}
for k, v in pairs(g) do table.insert(flat, k); table.insert(flat, v) end
redis.call('HSET', KEYS[4], unpack(flat))
redis.call('HSET', K_SESSION, 'giveaway', ARGV[4])
redis.call('HINCRBY', KEYS[5], 'giveaways', 1)
local d = giveaway_event(g)
return {d, emit('giveaway', d)}
