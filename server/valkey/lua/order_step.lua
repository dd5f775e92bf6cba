-- Move an order attempt along its saga in its bucket's slot.
--   'abort'    pending attempt n -> failed (refused once it committed); its
--              reservations must then be released
--   'released' failed attempt n -> released (its reservations are all released): the
--              saga entry goes, and the next request with the key starts attempt n+1
--   'settled'  committed -> every remaining step is done: the saga entry goes
-- KEYS[1] order hash   KEYS[2] the bucket's saga index
-- ARGV[1] order id   ARGV[2] 'abort' | 'released' | 'settled'   ARGV[3] attempt
-- Returns: the status after the call ('' when the order does not exist)
local st = redis.call('HMGET', KEYS[1], 'status', 'attempt')
if not st[1] then
  redis.call('ZREM', KEYS[2], 'o:' .. ARGV[1])
  return ''
end
local op, mine = ARGV[2], st[2] == ARGV[3]
if op == 'abort' and st[1] == 'pending' and mine then
  redis.call('HSET', KEYS[1], 'status', 'failed')
  return 'failed'
elseif op == 'released' and st[1] == 'failed' and mine then
  redis.call('HSET', KEYS[1], 'status', 'released')
  redis.call('ZREM', KEYS[2], 'o:' .. ARGV[1])
  return 'released'
elseif op == 'settled' and st[1] == 'committed' then
  redis.call('ZREM', KEYS[2], 'o:' .. ARGV[1])
end
return st[1]
