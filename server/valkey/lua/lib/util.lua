-- Helpers every script may use: `--!include lib/util.lua`.

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local NOW = now_ms()

-- A domain failure: the error reply "LC <code> <message>"; a table becomes JSON with
-- `message` and details (store.translate turns it into ApiError fields).
local function fail(code, message)
  if type(message) == 'table' then message = cjson.encode(message) end
  return redis.error_reply('LC ' .. code .. ' ' .. message)
end

local function int(n) return string.format('%d', n) end

-- The one writer of a touch (counters/attribution.py `Touch.parse` reads it): the buyer
-- acted on `product` in `session` now, as `<session>|<ms>`; no session, no touch.
local function touch(key, product, session)
  if session ~= '' then redis.call('HSET', key, product, session .. '|' .. int(NOW)) end
end

-- floor(a * b / d) for non-negative integers, exact while a, b * d and (a / d) * b stay
-- below 2^53 (doubles are exact there; a * b alone may not be).
local function muldiv(a, b, d)
  local r = a % d
  return ((a - r) / d) * b + (r * b - (r * b) % d) / d
end

local function load_hash(key)
  local flat = redis.call('HGETALL', key)
  if #flat == 0 then return nil end
  local h = {}
  for i = 1, #flat, 2 do h[flat[i]] = flat[i + 1] end
  return h
end
