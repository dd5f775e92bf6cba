-- Change a product's price, available stock or commission rate.
-- A stock change is recorded as restocked += new - old, so stock conservation holds.
-- A deal is never dearer than the list price: a price cut to or below an open deal's
-- price closes that deal (its units return to the stock); the caller announces it.
-- KEYS[1] product hash   KEYS[2] its deals hash
-- ARGV[1] price or ''   ARGV[2] stock or ''   ARGV[3] commission_bps or ''
-- Returns: {changed_price_or_stock (0|1), price, stock, JSON array of deals this closed}
-- Fails: LC not_found
--!include lib/util.lua
local K_PRODUCT, K_DEALS = KEYS[1], KEYS[2]
--!include lib/deal.lua
if redis.call('EXISTS', K_PRODUCT) == 0 then return fail('not_found', 'product does not exist') end
local changed = 0
local cur = redis.call('HMGET', K_PRODUCT, 'price', 'stock')
local closed = {}
if ARGV[1] ~= '' and ARGV[1] ~= cur[1] then
  redis.call('HSET', K_PRODUCT, 'price', ARGV[1]); changed = 1
  local price = tonumber(ARGV[1])
  local flat = redis.call('HGETALL', K_DEALS)
  for i = 1, #flat, 2 do
    if string.sub(flat[i], 1, 2) == 's:' then
      local d = cjson.decode(flat[i + 1])
      if d.status == 'open' and tonumber(d.price) >= price then
        table.insert(closed, cjson.encode(close_deal(d.session)))
      end
    end
  end
end
if ARGV[2] ~= '' then
  local now_stock = tonumber(redis.call('HGET', K_PRODUCT, 'stock'))
  if tonumber(ARGV[2]) ~= now_stock then
    redis.call('HSET', K_PRODUCT, 'stock', ARGV[2])
    redis.call('HINCRBY', K_PRODUCT, 'restocked', tonumber(ARGV[2]) - now_stock); changed = 1
  end
end
if ARGV[3] ~= '' then redis.call('HSET', K_PRODUCT, 'commission_bps', ARGV[3]) end
local now = redis.call('HMGET', K_PRODUCT, 'price', 'stock')
return {changed, tonumber(now[1]), tonumber(now[2]), '[' .. table.concat(closed, ',') .. ']'}
