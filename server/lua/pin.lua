-- Pin a product (replacing any pin) or unpin, by the session's creator while live.
-- KEYS[1] session hash   KEYS[2] history stream   KEYS[3] pin log (list)   KEYS[4] counters
-- ARGV[1..4] room convention (lib/room.lua)
-- ARGV[5] 'pin' | 'unpin'   ARGV[6] caller id   ARGV[7] stream_ts_ms or ''
-- ARGV[8] product id ('' for unpin)   ARGV[9] product JSON ('' for unpin)
-- Returns: {pin JSON or '', seq (0 when an unpin found nothing pinned)}
--!include lib/room.lua

local s = load_session()
if not s then return fail('not_found', 'session does not exist') end
if s.creator ~= ARGV[6] then return fail('forbidden', 'only the session creator can pin') end
if s.status ~= 'live' then return fail('not_live', 'session is not live') end
local started = tonumber(s.started_at)
local sts = ARGV[7] ~= '' and tonumber(ARGV[7]) or (NOW - started)

if ARGV[5] == 'unpin' then
  if s.pin == '' then return {'', 0} end
  local old = cjson.decode(s.pin)
  redis.call('HSET', SESSION, 'pin', '')
  redis.call('RPUSH', KEYS[3], cjson.encode({op = 'unpin', at = sts}))
  local seq = emit('unpinned', '{"product":' .. cjson.encode(old.product.id) .. '}')
  return {'', seq}
end

if not in_showcase(s, ARGV[8]) then
  return fail('bad_request', 'product is not in this session\'s showcase')
end
local pin = '{"product":' .. ARGV[9] .. ',"pinned_at":' .. NOW .. ',"stream_ts_ms":' ..
  string.format('%d', sts) .. ',"deal":null}'
redis.call('HSET', SESSION, 'pin', pin)
redis.call('RPUSH', KEYS[3], cjson.encode({op = 'pin', at = sts, product = ARGV[8]}))
redis.call('HINCRBY', KEYS[4], 'pins', 1)
local seq = emit('pinned', pin)
return {pin, seq}
