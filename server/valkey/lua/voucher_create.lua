-- Create a voucher if its code is free (the terms never change afterwards).
-- KEYS[1] voucher hash
-- ARGV[1] code   ARGV[2] seller   ARGV[3] percent_off (0 for an amount voucher)
-- ARGV[4] amount_off (0 for a percent voucher)   ARGV[5] min_spend   ARGV[6] total_uses
-- ARGV[7] per_buyer   ARGV[8] starts_at (ms)   ARGV[9] ends_at (ms)   ARGV[10] session or ''
-- ARGV[11] products JSON array ([] = every product of the seller)   ARGV[12] created_at
-- Returns: 1 when created, 0 when the code exists (nothing changes)
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'code', ARGV[1], 'seller', ARGV[2], 'percent_off', ARGV[3],
  'amount_off', ARGV[4], 'min_spend', ARGV[5], 'total_uses', ARGV[6], 'per_buyer', ARGV[7],
  'starts_at', ARGV[8], 'ends_at', ARGV[9], 'session', ARGV[10], 'products', ARGV[11],
  'created_at', ARGV[12], 'used', 0, 'held', 0, 'discount_given', 0)
return 1
