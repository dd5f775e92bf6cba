-- What many idempotency keys' requests would be answered, in one call (read only): a
-- flash-sale storm's late buyers each need to know whether their key already bought (then
-- the answer is its order, not `sold_out`) or names another request (`conflict`); the node
-- asks for all of one loop tick at once. The answer is the idempotency rule's
-- (lib/idempotency.lua, the one implementation: the node does not compare fingerprints).
-- KEYS[1..n] order hashes (on a cluster: all of one bucket)
-- ARGV[1..n] the request fingerprint asked with each key
-- Returns: for each key, {answer, body}: answer 'new' | 'join' | 'release' | 'replay' |
--          'conflict' (lib/idempotency.lua); body the order JSON for 'replay', the error
--          text ("LC conflict …") for 'conflict', else ''
--!include lib/util.lua
--!include lib/idempotency.lua
local out = {}
for i, key in ipairs(KEYS) do
  local st = redis.call('HMGET', key, 'status', 'req_hash', 'json')
  local answer = idempotency(st[1], st[2], ARGV[i])
  local body = ''
  if answer == 'replay' then body = st[3]
  elseif answer == 'conflict' then body = idempotency_conflict().err end
  out[i] = {answer, body}
end
return out
