-- Start or end a session (its creator only), and tell the room.
-- KEYS[1] session hash   KEYS[2] history stream   KEYS[3] pin log (list)
-- ARGV[1..4] room convention (lib/room.lua)
-- ARGV[5] 'start' | 'end'   ARGV[6] caller id
-- Returns: {status, started_at, ended_at, seq}
--!include lib/room.lua

local s = load_session()
if not s then return fail('not_found', 'session does not exist') end
if s.creator ~= ARGV[6] then return fail('forbidden', 'only the session creator can do this') end
local action = ARGV[5]
if action == 'start' then
  if s.status == 'live' then return fail('conflict', 'session is already live') end
  if s.status == 'ended' then return fail('conflict', 'session has ended') end
  redis.call('HSET', SESSION, 'status', 'live', 'started_at', NOW)
  local seq = emit('session', '{"status":"live"}')
  return {'live', tostring(NOW), '', seq}
end
if s.status == 'scheduled' then return fail('not_live', 'session has not started') end
if s.status == 'ended' then return fail('conflict', 'session has already ended') end
local started = tonumber(s.started_at)
if s.pin ~= '' then
  local pin = cjson.decode(s.pin)
  redis.call('HSET', SESSION, 'pin', '')
  redis.call('RPUSH', KEYS[3], cjson.encode({op = 'unpin', at = NOW - started}))
  emit('unpinned', '{"product":' .. cjson.encode(pin.product.id) .. '}')
end
redis.call('HSET', SESSION, 'status', 'ended', 'ended_at', NOW)
local seq = emit('session', '{"status":"ended"}')
return {'ended', s.started_at, tostring(NOW), seq}
