-- Room helpers, pasted into scripts by `--!include lib/room.lua` (after lib/keys.lua).
-- The including script defines, before the includes:
--   PREFIX (key prefix), HMAX (history max events), HAGE (history max age, ms),
--   FRESH_EPOCH (an epoch id used only if a session has none or lost its history).
-- A domain failure is an error reply "LC <code> <message>".

--!include lib/util.lua

-- Append one room event (type t, data d as JSON text) to session sid's history and publish it.
-- Returns its seq: gap-free per session because only this function increments it.
local function emit_to(sid, t, d)
  local session, history = k_session(sid), k_history(sid)
  local epoch = redis.call('HGET', session, 'epoch')
  local last = tonumber(redis.call('HGET', session, 'seq') or '0')
  if (not epoch) or (last > 0 and redis.call('EXISTS', history) == 0) then
    redis.call('HSET', session, 'epoch', FRESH_EPOCH)
  end
  local seq = redis.call('HINCRBY', session, 'seq', 1)
  local ev = '{"t":"' .. t .. '","seq":' .. seq .. ',"ts":' .. int(NOW) .. ',"d":' .. d .. '}'
  redis.call('XADD', history, 'MAXLEN', '=', HMAX, seq .. '-0', 'e', ev, 'ts', int(NOW))
  local head = redis.call('XRANGE', history, '-', '+', 'COUNT', 16)
  local cutoff = NOW - HAGE
  local first_fresh = nil
  for _, entry in ipairs(head) do
    if tonumber(entry[2][4]) >= cutoff then first_fresh = entry[1]; break end
  end
  if first_fresh == nil and #head > 0 then
    first_fresh = (tonumber(string.match(head[#head][1], '^(%d+)')) + 1) .. '-0'
  end
  if first_fresh ~= nil then redis.call('XTRIM', history, 'MINID', '=', first_fresh) end
  redis.call('PUBLISH', k_channel(sid), ev)
  return seq
end

local function in_showcase(s, product)
  for _, id in ipairs(cjson.decode(s.showcase or '[]')) do
    if id == product then return true end
  end
  return false
end

local function live_viewers(sid)
  local total = 0
  local flat = redis.call('HGETALL', k_presence(sid))
  for i = 2, #flat, 2 do
    local n, exp = string.match(flat[i], '^(%d+):(%d+)$')
    if n and tonumber(exp) > NOW then total = total + tonumber(n) end
  end
  return total
end

-- The deal JSON shown in a pin: {price, stock_left, per_buyer_limit, ends_at, status}.
local function deal_json(d)
  return '{"price":' .. d.price .. ',"stock_left":' .. d.stock_left .. ',"per_buyer_limit":' ..
    d.per_buyer_limit .. ',"ends_at":' .. d.ends_at .. ',"status":"' .. d.status .. '"}'
end

-- Close session sid's open deal (if any): what is left returns to the product's stock.
-- Emits `deal {status: closed}`. Returns the deal's product id ('' when nothing was open),
-- so the caller can tell which product's stock moved.
local function close_deal(sid)
  local dk = k_deal(sid)
  local d = load_hash(dk)
  if not d or d.status ~= 'open' then return '' end
  local left = tonumber(d.stock_left)
  local pk = k_product(d.product)
  if left > 0 then
    redis.call('HINCRBY', pk, 'stock', left)
  end
  redis.call('HINCRBY', pk, 'held', -left)
  redis.call('HSET', dk, 'status', 'closed', 'closed_at', int(NOW))
  redis.call('ZREM', k_open_deals(), sid)
  emit_to(sid, 'deal', '{"product":' .. cjson.encode(d.product) .. ',"status":"closed","stock_left":' ..
    left .. ',"ends_at":' .. d.ends_at .. ',"price":' .. d.price .. '}')
  return d.product
end
