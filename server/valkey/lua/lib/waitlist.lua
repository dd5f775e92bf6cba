-- Waitlist helpers, pasted in by `--!include lib/waitlist.lua` (after lib/util.lua), in a
-- script that has K_PRODUCT, K_WAITLIST (sorted set: user -> place) and K_HOLDS (hash:
-- user -> {hold_until, batch, res}) of one product.
-- Conservation: a hold moves one unit stock -> wl_held; its expiry moves it back (or on to
-- the next user); a purchase by its holder moves it wl_held -> reserved (reserve.lua).

-- Give up to n units of the stock to the first n waiting users, as holds of `batch` until
-- `hold_until`. Returns the users, first in line first.
local function offer(n, batch, hold_until)
  local given = {}
  while #given < n do
    local head = redis.call('ZPOPMIN', K_WAITLIST)
    if #head == 0 then break end
    local user = head[1]
    if redis.call('HEXISTS', K_HOLDS, user) == 0 then
      redis.call('HSET', K_HOLDS, user, cjson.encode({hold_until = hold_until, batch = batch, res = ''}))
      table.insert(given, user)
    end
  end
  if #given > 0 then
    redis.call('HINCRBY', K_PRODUCT, 'stock', -#given)
    redis.call('HINCRBY', K_PRODUCT, 'wl_held', #given)
    redis.call('HINCRBY', K_PRODUCT, 'wl_offers', #given)
  end
  return given
end

-- A hold ends unbought (expired or given up): its unit returns to the stock.
local function drop_hold(user)
  redis.call('HDEL', K_HOLDS, user)
  redis.call('HINCRBY', K_PRODUCT, 'wl_held', -1)
  redis.call('HINCRBY', K_PRODUCT, 'stock', 1)
end

local function users_json(users)
  local out = {}
  for i, u in ipairs(users) do out[i] = cjson.encode(u) end
  return '[' .. table.concat(out, ',') .. ']'
end
