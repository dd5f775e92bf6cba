-- Start or end a session (its creator only), and tell the room.
-- Ending closes the open deal (its stock returns), unpins, and logs the unpin position.
-- KEYS[1] session hash
-- ARGV[1..4] context (lib/context.lua)   ARGV[5] session id
-- ARGV[6] 'start' | 'end'   ARGV[7] caller id
-- Returns: {status, seq of the session event, product of the deal this closed or ''}
--!include lib/context.lua
--!include lib/keys.lua
--!include lib/room.lua

local sid, action, caller = ARGV[5], ARGV[6], ARGV[7]
local s = load_hash(KEYS[1])
if not s then return fail('not_found', 'session does not exist') end
if s.creator ~= caller then return fail('forbidden', 'only the session creator can do this') end
if action == 'start' then
  if s.status == 'live' then return fail('conflict', 'session is already live') end
  if s.status == 'ended' then return fail('conflict', 'session has ended') end
  redis.call('HSET', KEYS[1], 'status', 'live', 'started_at', int(NOW))
  return {'live', emit_to(sid, 'session', '{"status":"live"}'), ''}
end
if s.status == 'scheduled' then return fail('not_live', 'session has not started') end
if s.status == 'ended' then return fail('conflict', 'session has already ended') end
local closed = close_deal(sid)
if s.pin ~= '' then
  local pin = cjson.decode(s.pin)
  redis.call('HSET', KEYS[1], 'pin', '', 'pin_deal', '')
  local at = int(NOW - tonumber(s.started_at))
  redis.call('RPUSH', k_pin_log(sid), '{"op":"unpin","at":' .. at .. '}')
  emit_to(sid, 'unpinned', '{"product":' .. cjson.encode(pin.product.id) .. ',"stream_ts_ms":' ..
    at .. '}')
end
redis.call('HSET', KEYS[1], 'status', 'ended', 'ended_at', int(NOW))
return {'ended', emit_to(sid, 'session', '{"status":"ended"}'), closed}
