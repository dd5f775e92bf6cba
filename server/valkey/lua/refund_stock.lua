-- Return a refund's units to its product's stock, once per refund line.
-- KEYS[1] product hash   KEYS[2] the product's applied-effects set
-- ARGV[1] effect id `r:<order>:<refund id>`   ARGV[2] units
-- Returns: 1 when applied now, 0 when applied before
if redis.call('SADD', KEYS[2], ARGV[1]) == 0 then return 0 end
redis.call('HINCRBY', KEYS[1], 'stock', tonumber(ARGV[2]))
redis.call('HINCRBY', KEYS[1], 'refunded', tonumber(ARGV[2]))
return 1
