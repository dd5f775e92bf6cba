-- Create a product if its id is free.
-- KEYS[1] product hash
-- ARGV: id, seller, title, price, currency, stock, commission_bps, image_url, created_at
-- Returns: 1 when created, 0 when the id exists (nothing changes).
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'id', ARGV[1], 'seller', ARGV[2], 'title', ARGV[3],
  'price', ARGV[4], 'currency', ARGV[5], 'stock', ARGV[6], 'commission_bps', ARGV[7],
  'image_url', ARGV[8], 'created_at', ARGV[9], 'initial_stock', ARGV[6], 'restocked', 0,
  'sold', 0, 'refunded', 0)
return 1
