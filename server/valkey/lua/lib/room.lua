-- Room helpers, pasted into scripts by `--!include lib/room.lua` (after lib/context.lua).
-- A domain failure is an error reply "LC <code> <message>".

--!include lib/util.lua

-- Append one room event (type t, data d as JSON text) to the session's history and
-- publish it on the room's shard channel, from the session's `epoch` and `seq` as the
-- caller read them (in this script); `...`: more session fields and values to set with
-- the new seq (one HSET). Returns its seq: gap-free per session because only this
-- function increments it. The history is bounded by count on every append and by age
-- every 16th append (an age bound that is exact to 16 events).
local function emit_after(t, d, epoch, last_seq, ...)
  local last = tonumber(last_seq or '0')
  local seq = last + 1
  local ts = int(NOW)
  local ev = '{"t":"' .. t .. '","seq":' .. seq .. ',"ts":' .. ts .. ',"d":' .. d .. '}'
  local id = seq .. '-0'
  -- one XADD as a rule: NOMKSTREAM answers nil when a session that had events lost its
  -- history (then the event starts a fresh epoch); the first event creates it
  local kept = epoch and last > 0 and
    redis.call('XADD', K_HISTORY, 'NOMKSTREAM', 'MAXLEN', '=', HMAX, id, 'e', ev, 'ts', ts)
  if not kept then redis.call('XADD', K_HISTORY, 'MAXLEN', '=', HMAX, id, 'e', ev, 'ts', ts) end
  if (not epoch) or (last > 0 and not kept) then
    redis.call('HSET', K_SESSION, 'epoch', FRESH_EPOCH, 'seq', seq, ...)
  else
    redis.call('HSET', K_SESSION, 'seq', seq, ...)
  end
  if seq % 16 == 0 then
    local head = redis.call('XRANGE', K_HISTORY, '-', '+', 'COUNT', 32)
    local cutoff = NOW - HAGE
    local first_fresh = nil
    for _, entry in ipairs(head) do
      if tonumber(entry[2][4]) >= cutoff then first_fresh = entry[1]; break end
    end
    if first_fresh == nil and #head > 0 then
      first_fresh = (tonumber(string.match(head[#head][1], '^(%d+)')) + 1) .. '-0'
    end
    if first_fresh ~= nil then redis.call('XTRIM', K_HISTORY, 'MINID', '=', first_fresh) end
  end
  redis.call('SPUBLISH', K_CHANNEL, ev)
  return seq
end

-- emit_after with the session's epoch and seq read here.
local function emit(t, d)
  local st = redis.call('HMGET', K_SESSION, 'epoch', 'seq')
  return emit_after(t, d, st[1], st[2])
end

-- `sold_out {product}`: a purchase took the last unit buy_now can have in this room.
local function emit_sold_out(product)
  return emit('sold_out', '{"product":' .. cjson.encode(product) .. '}')
end

-- `deal {status: closed, …}` for a deal closed in its product's slot, once per deal id
-- (the node that closed it and any node sweeping due deals may both ask).
local function announce_closed_deal(deal_json)
  if deal_json == nil or deal_json == '' then return 0 end
  local d = cjson.decode(deal_json)
  if redis.call('HGET', K_SESSION, 'deal_closed') == d.id then return 0 end
  redis.call('HSET', K_SESSION, 'deal_closed', d.id)
  return emit('deal', '{"product":' .. cjson.encode(d.product) .. ',"status":"closed","stock_left":' ..
    int(d.stock_left) .. ',"ends_at":' .. int(d.ends_at) .. ',"price":' .. int(d.price) .. '}')
end

-- Is product id `pid` in the session's showcase (its JSON array of ids)?
local function in_showcase(showcase_json, pid)
  for _, id in ipairs(cjson.decode(showcase_json or '[]')) do
    if id == pid then return true end
  end
  return false
end

-- Before the session's creator opens a `kind` ('auction' | 'giveaway', `a_kind` its name
-- with an article) on `product`: the session exists, `caller` is its creator, it is live,
-- `check()` (or nil) passes, the product is in its showcase, and no `kind` is open.
-- Returns {the session's creator}, or {nil, the failure to return}.
local function may_open(kind, a_kind, caller, product, check)
  local s = redis.call('HMGET', K_SESSION, 'creator', 'status', 'showcase', kind)
  if not s[1] then return {nil, fail('not_found', 'session does not exist')} end
  if s[1] ~= caller then
    return {nil, fail('forbidden', 'only the session creator can start ' .. a_kind)}
  end
  if s[2] ~= 'live' then return {nil, fail('not_live', 'session is not live')} end
  local failed = check and check()
  if failed then return {nil, failed} end
  if not in_showcase(s[3], product) then
    return {nil, fail('conflict', {message = 'the product is not in this session\'s showcase',
      product = product})}
  end
  if s[4] and s[4] ~= '' then
    return {nil, fail('conflict', {message = a_kind .. ' is already open in this session',
      [kind] = s[4]})}
  end
  return {s[1]}
end

-- An opened `kind` stored and announced: its hash (`key`, fields `h`), the session's
-- pointer to it, the session counter `<kind>s`, and the `kind` room event `event(h)`.
-- Returns {the event data JSON, seq}.
local function store_opened(kind, key, counters, h, event)
  local flat = {}
  for k, v in pairs(h) do table.insert(flat, k); table.insert(flat, v) end
  redis.call('HSET', key, unpack(flat))
  redis.call('HSET', K_SESSION, kind, h.id)
  redis.call('HINCRBY', counters, kind .. 's', 1)
  local d = event(h)
  return {d, emit(kind, d)}
end
