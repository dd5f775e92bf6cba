-- An order's credits (or a refund's clawbacks) on one creator's ledger, once per effect
-- id: one entry per line, the balance moved by their sum.
-- KEYS[1] the creator's applied-effects set   KEYS[2] ledger list   KEYS[3] balance hash
-- ARGV[1] effect id   ARGV[2] entries JSON [{order, line, product, session, qty, amount,
--         kind: credit | clawback}] (amount signed: credits positive)
-- Returns: 1 when applied now, 0 when applied before
--!include lib/util.lua
if redis.call('SADD', KEYS[1], ARGV[1]) == 0 then return 0 end
local sum = 0
for _, e in ipairs(cjson.decode(ARGV[2])) do
  local amount = tonumber(e.amount)
  sum = sum + amount
  redis.call('RPUSH', KEYS[2], '{"order":' .. cjson.encode(e.order) .. ',"line":' .. int(e.line) ..
    ',"product":' .. cjson.encode(e.product) .. ',"session":' .. cjson.encode(e.session) ..
    ',"qty":' .. int(e.qty) .. ',"amount":' .. int(amount) .. ',"kind":"' .. e.kind ..
    '","status":"pending","at":' .. int(NOW) .. '}')
end
if sum ~= 0 then redis.call('HINCRBY', KEYS[3], 'balance', sum) end
return 1
