-- Change a product's price, available stock or commission rate.
-- A stock change is recorded as restocked += new - old, so stock conservation holds.
-- A restock (stock up by k) first offers the k units to the first k users on the
-- product's waitlist: each gets a hold of one unit (lib/waitlist.lua) until now + ARGV[5].
-- A deal is never dearer than the list price: a price cut to or below an open deal's
-- price closes that deal (its units return to the stock); the caller announces it.
-- KEYS[1] product hash   KEYS[2] its deals hash   KEYS[3] waitlist   KEYS[4] holds
-- ARGV[1] price or ''   ARGV[2] stock or ''   ARGV[3] commission_bps or ''
-- ARGV[4] the batch id of holds a restock gives   ARGV[5] hold duration (ms)
-- Returns: {changed_price_or_stock (0|1), price, stock, JSON array of deals this closed,
--           JSON array of users a restock gave a hold, hold_until}
-- Fails: LC not_found
--!include lib/util.lua
local K_PRODUCT, K_DEALS, K_WAITLIST, K_HOLDS = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
--!include lib/deal.lua
--!include lib/waitlist.lua
if redis.call('EXISTS', K_PRODUCT) == 0 then return fail('not_found', 'product does not exist') end
local changed = 0
local cur = redis.call('HMGET', K_PRODUCT, 'price', 'stock')
local closed = {}
local offered = {}
local hold_until = NOW + tonumber(ARGV[5])
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
    if tonumber(ARGV[2]) > now_stock then
      offered = offer(tonumber(ARGV[2]) - now_stock, ARGV[4], hold_until)
    end
  end
end
if ARGV[3] ~= '' then redis.call('HSET', K_PRODUCT, 'commission_bps', ARGV[3]) end
local now = redis.call('HMGET', K_PRODUCT, 'price', 'stock')
return {changed, tonumber(now[1]), tonumber(now[2]), '[' .. table.concat(closed, ',') .. ']',
  users_json(offered), hold_until}
