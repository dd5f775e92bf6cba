-- Bind an order id that must never be placed: a prize order (auction, giveaway) whose
-- attempt failed for stock. Once `void`, order_begin.lua refuses the id (its request
-- fingerprint never matches), so the prize's outcome is the order record's alone:
-- committed = sold, void = unsold, whichever node asks and however often.
-- KEYS[1] order hash
-- ARGV[1] 'void' (bind it if absent or released) | 'peek' (only read)
-- Returns: the status after the call: 'void', 'committed', or 'pending' / 'failed' (an
--          attempt is in flight: ask again later)
local st = redis.call('HGET', KEYS[1], 'status')
if ARGV[1] == 'void' and (not st or st == 'released') then
  redis.call('HSET', KEYS[1], 'status', 'void', 'req_hash', 'void')
  return 'void'
end
return st or ''
