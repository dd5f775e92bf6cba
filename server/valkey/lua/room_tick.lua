-- One node's periodic report for one room: presence heartbeat, merged likes, counters.
-- KEYS[1] presence hash (node -> "count:expires_ms")   KEYS[2] counters hash
-- ARGV[1] node id   ARGV[2] local viewer count   ARGV[3] presence ttl (ms)
-- ARGV[4] likes to add since the last tick
-- Returns: {viewers, likes, orders, units, peak} summed over live nodes
-- The one reader of the presence hash: the sum goes to the counters hash as `viewers`,
-- with `viewers_until`, when the first of the reports it sums expires (read by
-- counters/room_counters.py `live_viewers` and by pin.lua).
--!include lib/util.lua
local count = tonumber(ARGV[2])
if count > 0 then
  redis.call('HSET', KEYS[1], ARGV[1], count .. ':' .. int(NOW + tonumber(ARGV[3])))
else
  redis.call('HDEL', KEYS[1], ARGV[1])
end
local viewers, soonest = 0, 0
local flat = redis.call('HGETALL', KEYS[1])
for i = 1, #flat, 2 do
  local n, exp = string.match(flat[i + 1], '^(%d+):(%d+)$')
  exp = tonumber(exp)
  if n and exp > NOW then
    viewers = viewers + tonumber(n)
    if soonest == 0 or exp < soonest then soonest = exp end
  else
    redis.call('HDEL', KEYS[1], flat[i])
  end
end
redis.call('HSET', KEYS[2], 'viewers', viewers, 'viewers_until', int(soonest))
local likes_delta = tonumber(ARGV[4])
if likes_delta > 0 then redis.call('HINCRBY', KEYS[2], 'likes', likes_delta) end
local peak = tonumber(redis.call('HGET', KEYS[2], 'peak_viewers') or '0')
if viewers > peak then
  peak = viewers
  redis.call('HSET', KEYS[2], 'peak_viewers', peak)
end
local c = redis.call('HMGET', KEYS[2], 'likes', 'orders', 'units')
return {viewers, tonumber(c[1] or '0'), tonumber(c[2] or '0'), tonumber(c[3] or '0'), peak}
