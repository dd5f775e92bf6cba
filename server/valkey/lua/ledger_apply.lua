-- An order's credits (or a refund's clawbacks) on one creator's ledger, once per effect
-- id: one entry per line, the balance moved by their sum.
-- KEYS[1] the creator's applied-effects set   KEYS[2] ledger list   KEYS[3] balance hash
-- ARGV[1] effect id   ARGV[2] entries JSON [{order, line, product, session, qty, amount,
--         kind: credit | clawback}] (amount signed: credits positive)
-- Returns: 1 when applied now, 0 when applied before
--!include lib/util.lua
--!include lib/effects.lua
if redis.call('SADD', KEYS[1], ARGV[1]) == 0 then return 0 end
apply_ledger(KEYS[2], KEYS[3], cjson.decode(ARGV[2]))
return 1
