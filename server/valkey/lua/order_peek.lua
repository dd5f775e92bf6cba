-- What many idempotency keys' orders are, in one call (read only): a flash-sale storm's
-- late buyers each need to know whether their key already bought (then the answer is its
-- order, not `sold_out`); the node asks for all of one loop tick at once.
-- KEYS[1..n] order hashes (on a cluster: all of one bucket)
-- Returns: for each key, {status, req_hash, order JSON} (each nil when absent)
local out = {}
for i, key in ipairs(KEYS) do
  out[i] = redis.call('HMGET', key, 'status', 'req_hash', 'json')
end
return out
