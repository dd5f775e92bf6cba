-- An order's record (`--!include lib/order.lua` after lib/util.lua): order_commit.lua
-- commits a saga attempt with it, order_place.lua a whole order at once.

-- The order JSON from its head {buyer, currency, source, external_id?, voucher?} and lines
-- [{product, qty, unit_price, amount, discount?, session, attribution, commission, seller,
-- creator}]: the total is the sum of amount - discount (what the buyer pays).
-- Returns: order JSON, total, JSON of the sellers (each once), JSON of each line's creator.
local function order_json(oid, head, lines)
  local total, discount = 0, 0
  local out, creators, sellers, seen_seller = {}, {}, {}, {}
  for i, l in ipairs(lines) do
    local off = tonumber(l.discount or 0)
    total = total + tonumber(l.amount) - off
    discount = discount + off
    out[i] = '{"product":' .. cjson.encode(l.product) .. ',"qty":' .. int(l.qty) ..
      ',"unit_price":' .. int(l.unit_price) .. ',"amount":' .. int(l.amount) ..
      ',"discount":' .. int(off) .. ',"session":' ..
      cjson.encode(l.session) .. ',"attribution":"' .. l.attribution .. '","commission":' ..
      int(l.commission) .. ',"seller":' .. cjson.encode(l.seller) .. '}'
    creators[i] = l.creator or ''
    if not seen_seller[l.seller] then seen_seller[l.seller] = true; table.insert(sellers, l.seller) end
  end
  local order = '{"id":' .. cjson.encode(oid) .. ',"buyer":' .. cjson.encode(head.buyer) ..
    ',"currency":' .. cjson.encode(head.currency) .. ',"total":' .. int(total) ..
    ',"discount":' .. int(discount) ..
    (head.voucher and (',"voucher":' .. cjson.encode(head.voucher)) or '') .. ',"lines":[' ..
    table.concat(out, ',') .. '],"created_at":' .. int(NOW) .. ',"source":"' .. head.source .. '"' ..
    (head.external_id and (',"external_id":' .. cjson.encode(head.external_id)) or '') .. '}'
  return order, total, cjson.encode(sellers), cjson.encode(creators)
end

-- The committed record (in the order hash k_order, with any more fields and values `...`)
-- and its orders stream entry (k_stream).
local function record_order(k_order, k_stream, oid, head, order, total, sellers, creators,
                            sold_out, ...)
  redis.call('HSET', k_order, 'status', 'committed', 'json', order, 'buyer', head.buyer,
    'sellers', sellers, 'creators', creators,
    'in_stream', head.source == 'external' and '0' or '1', 'sold_out', sold_out, ...)
  redis.call('XADD', k_stream, '*', 'type', 'order', 'order', oid, 'buyer', head.buyer,
    'total', int(total), 'currency', head.currency, 'at', int(NOW), 'json', order)
end
