-- Record a click: the buyer's touch on a product in a session, and the session's counters.
-- KEYS[1] touches hash of the buyer (product -> "<session>|<ms>")   KEYS[2] session counters
-- ARGV[1] product   ARGV[2] session id
-- Returns: the touch time (ms)
--!include lib/util.lua
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. '|' .. int(NOW))
redis.call('HINCRBY', KEYS[2], 'clicks', 1)
redis.call('HINCRBY', KEYS[2], 'clicks:' .. ARGV[1], 1)
return NOW
