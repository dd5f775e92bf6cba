-- Deal helpers for scripts in a product's slot (`--!include lib/deal.lua` after lib/util.lua).
-- The including script defines K_PRODUCT (product hash) and K_DEALS (its deals hash:
-- `s:<session>` -> deal JSON {id, session, product, price, stock, stock_left,
-- per_buyer_limit, ends_at, status, opened_at, closed_at?}; `b:<deal id>:<buyer>` -> units).
-- An open deal's units are out of the product's `stock` and counted in its `held`.

local function get_deal(sid)
  local raw = redis.call('HGET', K_DEALS, 's:' .. sid)
  if not raw then return nil end
  return cjson.decode(raw)
end

local function put_deal(d)
  redis.call('HSET', K_DEALS, 's:' .. d.session, cjson.encode(d))
end

-- Close session sid's open deal on this product: what is left returns to the stock.
-- Returns the closed deal, or nil when none was open.
local function close_deal(sid)
  local d = get_deal(sid)
  if not d or d.status ~= 'open' then return nil end
  local left = tonumber(d.stock_left)
  if left > 0 then
    redis.call('HINCRBY', K_PRODUCT, 'stock', left)
    redis.call('HINCRBY', K_PRODUCT, 'held', -left)
  end
  d.status = 'closed'
  d.closed_at = NOW
  put_deal(d)
  return d
end
