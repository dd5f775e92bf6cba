-- Refund units of an order's lines (or the whole rest), once per refund_id.
-- Stock of in-stream orders returns to the products; commission is clawed back by the
-- cumulative rule: after r of a line's q units, floor(commission * r / q) in total.
-- KEYS[1] order hash   KEYS[2] the order's refunds hash
--   refunds hash fields: 'r:<refund_id>' -> result JSON, 'u:<line>' -> units refunded,
--   'c:<line>' -> clawed back so far
-- ARGV[1..4] context (lib/context.lua)   ARGV[5] refund id
-- ARGV[6] lines JSON [{product, qty}] or '' for the whole rest
-- ARGV[7] caller id   ARGV[8] '1' when the caller is an admin
-- Returns: {'new' | 'replayed', result JSON}
--!include lib/context.lua
--!include lib/keys.lua
--!include lib/room.lua

local raw = redis.call('HGET', KEYS[1], 'json')
if not raw then return fail('not_found', {message = 'order does not exist'}) end
local done = redis.call('HGET', KEYS[2], 'r:' .. ARGV[5])
if done then return {'replayed', done} end
local order = cjson.decode(raw)
local creators = cjson.decode(redis.call('HGET', KEYS[1], 'creators') or '[]')
local admin = ARGV[8] == '1'
local in_stream = redis.call('HGET', KEYS[1], 'in_stream') == '1'

local index = {}
for i, line in ipairs(order.lines) do index[line.product] = i end
local function remaining(i)
  return order.lines[i].qty - tonumber(redis.call('HGET', KEYS[2], 'u:' .. (i - 1)) or '0')
end

local wanted = {}
if ARGV[6] == '' then
  local owns = admin
  for _, line in ipairs(order.lines) do
    if line.seller == ARGV[7] then owns = true end
  end
  if not owns then
    return fail('forbidden', {message = 'only the sellers of an order\'s lines (or an admin) can refund it'})
  end
  for i, line in ipairs(order.lines) do
    if (admin or line.seller == ARGV[7]) and remaining(i) > 0 then
      table.insert(wanted, {i = i, qty = remaining(i)})
    end
  end
  if #wanted == 0 then return fail('conflict', {message = 'nothing left to refund'}) end
else
  for _, req in ipairs(cjson.decode(ARGV[6])) do
    local i = index[req.product]
    if not i then return fail('bad_request', {message = 'product is not in this order', product = req.product}) end
    if not admin and order.lines[i].seller ~= ARGV[7] then
      return fail('forbidden', {message = 'only the seller of a line (or an admin) can refund it'})
    end
    if req.qty > remaining(i) then
      return fail('conflict', {message = 'more than remains unrefunded', product = req.product,
        refundable = remaining(i)})
    end
    table.insert(wanted, {i = i, qty = req.qty})
  end
end

local out, total_amount, total_claw = {}, 0, 0
for _, w in ipairs(wanted) do
  local line = order.lines[w.i]
  local before = line.qty - remaining(w.i)
  local after = before + w.qty
  local amount = line.unit_price * w.qty
  local total_after = muldiv(line.commission, after, line.qty)
  local claw_before = tonumber(redis.call('HGET', KEYS[2], 'c:' .. (w.i - 1)) or '0')
  local step = total_after - claw_before
  redis.call('HSET', KEYS[2], 'u:' .. (w.i - 1), after, 'c:' .. (w.i - 1), total_after)
  local pk = k_product(line.product)
  if in_stream then
    redis.call('HINCRBY', pk, 'stock', w.qty)
    redis.call('HINCRBY', pk, 'refunded', w.qty)
  end
  if line.session ~= cjson.null and line.attribution ~= 'none' then
    local ck = k_counters(line.session)
    redis.call('HINCRBY', ck, 'gmv_refunded', amount)
    redis.call('HINCRBY', ck, 'commission_clawed_back', step)
    redis.call('HINCRBY', ck, 'gmv_refunded:' .. line.product, amount)
    redis.call('HINCRBY', ck, 'commission_clawed_back:' .. line.product, step)
    if step > 0 then
      local creator = creators[w.i]
      redis.call('RPUSH', k_ledger(creator), cjson.encode({order = order.id, line = w.i - 1,
        product = line.product, session = line.session, qty = w.qty, amount = -step,
        kind = 'clawback', status = 'pending', at = NOW}))
      redis.call('HINCRBY', k_balance(creator), 'balance', -step)
    end
  end
  total_amount = total_amount + amount
  total_claw = total_claw + step
  table.insert(out, '{"product":' .. cjson.encode(line.product) .. ',"qty":' .. int(w.qty) ..
    ',"amount":' .. int(amount) .. ',"clawback":' .. int(step) .. '}')
end
local result = '{"refund_id":' .. cjson.encode(ARGV[5]) .. ',"order":' .. cjson.encode(order.id) ..
  ',"lines":[' .. table.concat(out, ',') .. '],"amount":' .. int(total_amount) ..
  ',"clawback":' .. int(total_claw) .. ',"at":' .. int(NOW) .. '}'
redis.call('HSET', KEYS[2], 'r:' .. ARGV[5], result)
redis.call('XADD', k_orders_stream(), '*', 'type', 'refund', 'order', order.id,
  'buyer', order.buyer, 'total', int(-total_amount), 'currency', order.currency,
  'at', int(NOW), 'json', result)
return {'new', result}
