-- One viewer's entry into an open giveaway (one entry per user; the creator cannot enter).
-- KEYS[1] the giveaway hash   KEYS[2] entrants hash   KEYS[3] joined users (sorted set)
-- ARGV[1] user   ARGV[2] display name   ARGV[3] until when the user counts as joined (ms)
-- Returns: {1 when entered now (0: already entered), entries}
-- Fails: LC not_found | forbidden (the creator) | ended
--!include lib/util.lua
local g = redis.call('HMGET', KEYS[1], 'status', 'ends_at', 'creator', 'id')
if not g[1] then return fail('not_found', 'giveaway does not exist') end
if ARGV[1] == g[3] then return fail('forbidden', 'the creator cannot enter the giveaway') end
if g[1] ~= 'open' or NOW >= tonumber(g[2]) then
  return fail('ended', {message = 'the giveaway has ended', giveaway = g[4]})
end
redis.call('ZADD', KEYS[3], tonumber(ARGV[3]), ARGV[1])
local new = redis.call('HSETNX', KEYS[2], ARGV[1], ARGV[2])
local entries = new == 1 and redis.call('HINCRBY', KEYS[1], 'entries', 1)
  or tonumber(redis.call('HGET', KEYS[1], 'entries'))
return {new, entries}
