-- Change a product's price, available stock or commission rate.
-- KEYS[1] product hash
-- ARGV[1] price or ''   ARGV[2] stock or ''   ARGV[3] commission_bps or ''
-- A stock change is recorded as restocked += new - old, so stock conservation holds.
-- Returns: {changed_price_or_stock (0|1), price, stock}
if redis.call('EXISTS', KEYS[1]) == 0 then
  return redis.error_reply('LC not_found product does not exist')
end
local changed = 0
local cur = redis.call('HMGET', KEYS[1], 'price', 'stock')
if ARGV[1] ~= '' and ARGV[1] ~= cur[1] then
  redis.call('HSET', KEYS[1], 'price', ARGV[1]); changed = 1
end
if ARGV[2] ~= '' and ARGV[2] ~= cur[2] then
  local delta = tonumber(ARGV[2]) - tonumber(cur[2])
  redis.call('HSET', KEYS[1], 'stock', ARGV[2])
  redis.call('HINCRBY', KEYS[1], 'restocked', delta); changed = 1
end
if ARGV[3] ~= '' then redis.call('HSET', KEYS[1], 'commission_bps', ARGV[3]) end
local now = redis.call('HMGET', KEYS[1], 'price', 'stock')
return {changed, tonumber(now[1]), tonumber(now[2])}
