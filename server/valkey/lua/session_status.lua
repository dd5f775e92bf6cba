-- Start or end a session (its creator only), and tell the room.
-- Ending unpins and logs the unpin position; the session's open deal was closed in its
-- product's slot by the node just before, and is announced here (once).
-- KEYS[1..3] room (lib/context.lua)   KEYS[4] pin log
-- ARGV[1..3] context   ARGV[4] 'start' | 'end'   ARGV[5] caller id
-- ARGV[6] the closed deal's JSON or ''
-- Returns: {status, seq of the session event}
-- Fails: LC not_found | forbidden | conflict | not_live
--!include lib/context.lua
--!include lib/room.lua
local action, caller = ARGV[4], ARGV[5]
local s = redis.call('HMGET', K_SESSION, 'creator', 'status', 'started_at', 'pin')
if not s[1] then return fail('not_found', 'session does not exist') end
if s[1] ~= caller then return fail('forbidden', 'only the session creator can do this') end
if action == 'start' then
  if s[2] == 'live' then return fail('conflict', 'session is already live') end
  if s[2] == 'ended' then return fail('conflict', 'session has ended') end
  redis.call('HSET', K_SESSION, 'status', 'live', 'started_at', int(NOW))
  return {'live', emit('session', '{"status":"live"}')}
end
if s[2] == 'scheduled' then return fail('not_live', 'session has not started') end
if s[2] == 'ended' then return fail('conflict', 'session has already ended') end
announce_closed_deal(ARGV[6])
if (s[4] or '') ~= '' then
  local pin = cjson.decode(s[4])
  redis.call('HSET', K_SESSION, 'pin', '', 'pin_deal', '', 'pin_deal_product', '')
  local at = int(NOW - tonumber(s[3]))
  redis.call('RPUSH', KEYS[4], '{"op":"unpin","at":' .. at .. '}')
  emit('unpinned', '{"product":' .. cjson.encode(pin.product.id) .. ',"stream_ts_ms":' .. at .. '}')
end
redis.call('HSET', K_SESSION, 'status', 'ended', 'ended_at', int(NOW))
return {'ended', emit('session', '{"status":"ended"}')}
