-- Shared room helpers, pasted into scripts by `--!include lib/room.lua`.
-- Callers follow the room convention:
--   KEYS[1] session hash   KEYS[2] history stream
--   ARGV[1] channel        ARGV[2] history max events   ARGV[3] history max age (ms)
--   ARGV[4] a fresh epoch id, used only if the session has none or lost its history
-- A domain failure is an error reply "LC <code> <message>".

local SESSION, HISTORY = KEYS[1], KEYS[2]
local CHANNEL, HMAX, HAGE, FRESH_EPOCH = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local NOW = now_ms()

local function fail(code, message)
  return redis.error_reply('LC ' .. code .. ' ' .. message)
end

local function ensure_epoch()
  local epoch = redis.call('HGET', SESSION, 'epoch')
  local seq = tonumber(redis.call('HGET', SESSION, 'seq') or '0')
  if (not epoch) or (seq > 0 and redis.call('EXISTS', HISTORY) == 0) then
    redis.call('HSET', SESSION, 'epoch', FRESH_EPOCH)
    return FRESH_EPOCH
  end
  return epoch
end

-- Append one room event (type t, data d as a JSON text) to the history and publish it.
-- Returns its seq: gap-free per session because only this function increments it.
local function emit(t, d)
  ensure_epoch()
  local seq = redis.call('HINCRBY', SESSION, 'seq', 1)
  local ev = '{"t":"' .. t .. '","seq":' .. seq .. ',"ts":' .. NOW .. ',"d":' .. d .. '}'
  redis.call('XADD', HISTORY, 'MAXLEN', '=', HMAX, seq .. '-0', 'e', ev, 'ts', NOW)
  local head = redis.call('XRANGE', HISTORY, '-', '+', 'COUNT', 16)
  local cutoff = NOW - HAGE
  local first_fresh = nil
  for _, entry in ipairs(head) do
    if tonumber(entry[2][4]) >= cutoff then first_fresh = entry[1]; break end
  end
  if first_fresh == nil and #head > 0 then
    local last_seq = tonumber(string.match(head[#head][1], '^(%d+)'))
    first_fresh = (last_seq + 1) .. '-0'
  end
  if first_fresh ~= nil then redis.call('XTRIM', HISTORY, 'MINID', '=', first_fresh) end
  redis.call('PUBLISH', CHANNEL, ev)
  return seq
end

local function load_session()
  if redis.call('EXISTS', SESSION) == 0 then return nil end
  local flat = redis.call('HGETALL', SESSION)
  local s = {}
  for i = 1, #flat, 2 do s[flat[i]] = flat[i + 1] end
  return s
end

local function in_showcase(s, product)
  for _, id in ipairs(cjson.decode(s.showcase or '[]')) do
    if id == product then return true end
  end
  return false
end
