-- One order line's units (`--!include lib/reserve.lua` after lib/util.lua, in a script
-- that has K_PRODUCT, K_DEALS, K_RATES, K_RES and K_HOLDS of the line's product; they may
-- be reassigned between calls). reserve.lua is its saga step; order_place.lua takes the
-- units at once (`direct`).
--!include lib/deal.lua

-- The line JSON text for reserve_line's answer.
local function line_json(pid, qty, unit, amount, commission, rate, seller, deal, from_hold, sold_out)
  return '{"product":' .. cjson.encode(pid) .. ',"qty":' .. int(qty) .. ',"unit_price":' ..
    int(unit) .. ',"amount":' .. int(amount) .. ',"commission":' .. int(commission) ..
    ',"rate":' .. int(rate) .. ',"seller":' .. cjson.encode(seller) .. ',"deal":' ..
    (deal and cjson.encode(deal.id) or 'null') .. ',"hold":' .. tostring(from_hold == 1) ..
    ',"sold_out":' .. tostring(sold_out) .. '}'
end

-- Price confirmation, the session's open deal (price, deal stock, per-buyer limit) or list
-- price and stock, a waitlist hold of the buyer, and the line's commission; every check
-- comes before the first write. mode: 'deal' (buy_now: the room's open deal applies) |
-- 'list' (checkout) | 'external' (`seen` is the unit price; no stock) | 'fixed' (a prize:
-- `seen` is the unit price, from the stock; deals ignored).
-- Not direct: the units move into reservation `rid` (reserve_settle.lua takes or releases
-- them later); idempotent by `rid`, and a reservation released before it was made stays
-- refused. Direct: the units are sold now (what reserve + take do), no reservation kept.
-- Returns: an error reply, or {line table, line JSON (nil when direct), the deal this
-- call closed at its ends_at (table) or nil}.
local function reserve_line(rid, buyer, qty, seen, mode, room, attributed, pid_arg, direct)
  if not direct then
    local prior = redis.call('HGET', K_RES, rid)
    if prior then
      local r = cjson.decode(prior)
      if r.state == 'released' then
        return fail('conflict', {message = 'this order attempt was abandoned; retry', aborted = true})
      end
      return {cjson.decode(r.line), r.line, nil}  -- held or taken: a concurrent duplicate
    end
  end

  local p = redis.call('HMGET', K_PRODUCT, 'id', 'price', 'stock', 'commission_bps', 'seller',
    'wl_held')
  if not p[1] then return fail('not_found', {message = 'product does not exist', product = pid_arg}) end
  local pid, list_price, stock = p[1], tonumber(p[2]), tonumber(p[3])

  local unit, kind, deal, closed, sold_out = list_price, 'stock', nil, nil, false
  -- a live waitlist hold of this buyer (not in another purchase) counts as one more unit
  -- (for what the buyer buys: not for an external order, not for a prize); a hold not in a
  -- purchase is counted in the product's `wl_held` (lib/waitlist.lua): none, none to read
  local hold, from_hold = nil, 0
  if mode ~= 'external' and mode ~= 'fixed' and tonumber(p[6] or '0') > 0 then
    local raw_hold = redis.call('HGET', K_HOLDS, buyer)
    if raw_hold then
      hold = cjson.decode(raw_hold)
      if hold.res == '' and tonumber(hold.hold_until) > NOW then from_hold = 1 else hold = nil end
    end
  end
  if mode == 'external' then
    unit, kind = seen, 'external'
  elseif mode == 'list' or mode == 'fixed' then
    if mode == 'fixed' then unit = seen end
    if stock + from_hold < qty then
      return fail('out_of_stock', {message = 'not enough stock for ' .. pid, product = pid,
        available = stock + from_hold})
    end
  else
    local d = room ~= '' and get_deal(room) or nil
    if d and d.status == 'open' and (tonumber(d.ends_at) <= NOW or tonumber(d.price) >= list_price) then
      closed = close_deal(room)
      d = closed
      stock = tonumber(redis.call('HGET', K_PRODUCT, 'stock'))
    end
    if d and d.status == 'open' then
      deal, kind, unit = d, 'deal', tonumber(d.price)
      if seen and seen ~= unit then
        return fail('conflict', {message = 'the price changed', price = unit})
      end
      local left = tonumber(d.stock_left)
      if left == 0 then return fail('sold_out', {message = 'the deal is sold out', product = pid}) end
      if left < qty then
        return fail('out_of_stock', {message = 'not enough deal stock', product = pid, available = left})
      end
      local bought = tonumber(redis.call('HGET', K_DEALS, 'b:' .. d.id .. ':' .. buyer) or '0')
      if bought + qty > tonumber(d.per_buyer_limit) then
        return fail('limit_exceeded', {message = 'over the per-buyer limit of this deal',
          limit = tonumber(d.per_buyer_limit), bought = bought})
      end
    else
      if seen and seen ~= unit then
        if d and tonumber(d.price) == seen then
          return fail('deal_ended', {message = 'the deal has ended', price = unit})
        end
        return fail('conflict', {message = 'the price changed', price = unit})
      end
      if stock + from_hold == 0 then return fail('sold_out', {message = 'sold out', product = pid}) end
      if stock + from_hold < qty then
        return fail('out_of_stock', {message = 'not enough stock', product = pid,
          available = stock + from_hold})
      end
    end
  end

  -- writes: the units move from the stock (or the deal) into this reservation, or (direct)
  -- straight to `sold`
  local into = direct and 'sold' or 'reserved'
  if kind == 'deal' then
    deal.stock_left = tonumber(deal.stock_left) - qty
    put_deal(deal)
    redis.call('HINCRBY', K_DEALS, 'b:' .. deal.id .. ':' .. buyer, qty)
    redis.call('HINCRBY', K_PRODUCT, 'held', -qty)
    redis.call('HINCRBY', K_PRODUCT, into, qty)
    sold_out = deal.stock_left == 0
  elseif kind == 'stock' then
    if qty > from_hold then
      sold_out = redis.call('HINCRBY', K_PRODUCT, 'stock', from_hold - qty) == 0
    end
    if from_hold == 1 then
      redis.call('HINCRBY', K_PRODUCT, 'wl_held', -1)
      if direct then  -- a waitlist conversion (reserve_settle.lua's take)
        redis.call('HDEL', K_HOLDS, buyer)
        redis.call('HINCRBY', K_PRODUCT, 'wl_converted', 1)
      else
        hold.res = rid
        redis.call('HSET', K_HOLDS, buyer, cjson.encode(hold))
      end
    end
    redis.call('HINCRBY', K_PRODUCT, into, qty)
  end
  if kind ~= 'stock' then from_hold = 0 end
  local amount = unit * qty
  local commission, rate = 0, 0
  if attributed ~= '' then
    rate = tonumber(p[4])
    local override = tonumber(redis.call('HGET', K_RATES, attributed) or '0')
    if override > rate then rate = override end
    commission = muldiv(amount, rate, 10000)
  end
  local line = {product = pid, qty = qty, unit_price = unit, amount = amount,
    commission = commission, rate = rate, seller = p[5], sold_out = sold_out}
  if direct then return {line, nil, closed} end
  local text = line_json(pid, qty, unit, amount, commission, rate, p[5], deal, from_hold, sold_out)
  redis.call('HSET', K_RES, rid, cjson.encode({state = 'held', qty = qty, kind = kind,
    hold = from_hold, deal = deal and deal.id or '', session = room, buyer = buyer, at = NOW,
    line = text}))
  return {line, text, closed}
end
