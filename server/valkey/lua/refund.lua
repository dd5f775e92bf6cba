-- Refund units of an order's lines (or the whole rest), once per refund_id, in the order's
-- bucket slot: the refund record, the cumulative clawback per line (after r of a line's
-- q units, floor(commission * r / q) in total), the amount refunded (after r units,
-- floor(paid * r / q) in total, paid = amount - discount), the bucket's orders stream entry, and
-- the saga entry for the refund's effects in other slots (stock back for in-stream
-- orders, session counters, the creators' ledgers): see docs/architecture.md.
-- KEYS[1] order hash   KEYS[2] the order's refunds hash   KEYS[3] the bucket's saga index
-- KEYS[4] the bucket's orders stream
--   refunds hash fields: 'r:<refund_id>' -> result JSON, 'e:<refund_id>' -> effects JSON,
--   'u:<line>' -> units refunded, 'c:<line>' -> clawed back so far
-- ARGV[1] refund id   ARGV[2] lines JSON [{product, qty}] or '' for the whole rest
-- ARGV[3] caller id   ARGV[4] '1' when the caller is an admin
-- ARGV[5] when the saga should redo the effects if they are not done (ms)
-- Returns: {'new' | 'replayed', result JSON, effects JSON}
-- Fails: LC not_found | forbidden | conflict
--!include lib/util.lua
local st = redis.call('HMGET', KEYS[1], 'status', 'json', 'creators', 'in_stream')
if st[1] ~= 'committed' then return fail('not_found', {message = 'order does not exist'}) end
local rid = ARGV[1]
local done = redis.call('HMGET', KEYS[2], 'r:' .. rid, 'e:' .. rid)
if done[1] then return {'replayed', done[1], done[2]} end
local order = cjson.decode(st[2])
local creators = cjson.decode(st[3] or '[]')
local admin = ARGV[4] == '1'
local caller = ARGV[3]

local index = {}
for i, line in ipairs(order.lines) do index[line.product] = i end
local function remaining(i)
  return order.lines[i].qty - tonumber(redis.call('HGET', KEYS[2], 'u:' .. (i - 1)) or '0')
end

local wanted = {}
if ARGV[2] == '' then
  local owns = admin
  for _, line in ipairs(order.lines) do
    if line.seller == caller then owns = true end
  end
  if not owns then
    return fail('forbidden', {message = 'only the sellers of an order\'s lines (or an admin) can refund it'})
  end
  for i, line in ipairs(order.lines) do
    if (admin or line.seller == caller) and remaining(i) > 0 then
      table.insert(wanted, {i = i, qty = remaining(i)})
    end
  end
  if #wanted == 0 then return fail('conflict', {message = 'nothing left to refund'}) end
else
  for _, req in ipairs(cjson.decode(ARGV[2])) do
    local i = index[req.product]
    if not i then return fail('conflict', {message = 'product is not in this order', product = req.product}) end
    if not admin and order.lines[i].seller ~= caller then
      return fail('forbidden', {message = 'only the seller of a line (or an admin) can refund it'})
    end
    if req.qty > remaining(i) then
      return fail('conflict', {message = 'more than remains unrefunded', product = req.product,
        refundable = remaining(i)})
    end
    table.insert(wanted, {i = i, qty = req.qty})
  end
end

local out, effects, total_amount, total_claw = {}, {}, 0, 0
for _, w in ipairs(wanted) do
  local line = order.lines[w.i]
  local after = line.qty - remaining(w.i) + w.qty
  local paid = line.amount - (line.discount or 0)
  local amount = muldiv(paid, after, line.qty) - muldiv(paid, after - w.qty, line.qty)
  local total_after = muldiv(line.commission, after, line.qty)
  local step = total_after - tonumber(redis.call('HGET', KEYS[2], 'c:' .. (w.i - 1)) or '0')
  redis.call('HSET', KEYS[2], 'u:' .. (w.i - 1), after, 'c:' .. (w.i - 1), total_after)
  total_amount = total_amount + amount
  total_claw = total_claw + step
  table.insert(out, '{"product":' .. cjson.encode(line.product) .. ',"qty":' .. int(w.qty) ..
    ',"amount":' .. int(amount) .. ',"clawback":' .. int(step) .. '}')
  local attributed = line.session ~= cjson.null and line.attribution ~= 'none'
  table.insert(effects, '{"line":' .. int(w.i - 1) .. ',"product":' .. cjson.encode(line.product) ..
    ',"qty":' .. int(w.qty) .. ',"amount":' .. int(amount) .. ',"clawback":' .. int(step) ..
    ',"session":' .. (attributed and cjson.encode(line.session) or 'null') ..
    ',"creator":' .. cjson.encode(creators[w.i] or '') .. '}')
end
local result = '{"refund_id":' .. cjson.encode(rid) .. ',"order":' .. cjson.encode(order.id) ..
  ',"lines":[' .. table.concat(out, ',') .. '],"amount":' .. int(total_amount) ..
  ',"clawback":' .. int(total_claw) .. ',"at":' .. int(NOW) .. '}'
local eff = '{"in_stream":' .. tostring(st[4] == '1') .. ',"lines":[' .. table.concat(effects, ',') .. ']}'
redis.call('HSET', KEYS[2], 'r:' .. rid, result, 'e:' .. rid, eff)
redis.call('XADD', KEYS[4], '*', 'type', 'refund', 'order', order.id,
  'buyer', order.buyer, 'total', int(-total_amount), 'currency', order.currency,
  'at', int(NOW), 'json', result)
redis.call('ZADD', KEYS[3], tonumber(ARGV[5]), 'r:' .. order.id .. ':' .. rid)
return {'new', result, eff}
