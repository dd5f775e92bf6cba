-- Auction helpers, pasted by `--!include lib/auction.lua` (after lib/room.lua).
-- An auction is the hash KEYS[4] of its session's slot (keys.auction): its terms
-- (product, start_price, increment, reserve, sudden_death, extend_ms), its state (status
-- open|closing|closed, ends_at, top_bid, bidder, bidder_name, bids) and, once closed, its
-- outcome (sold|unsold|reserve_not_met|no_bids) and order.

-- The `auction` room event's data: what every viewer sees (never the reserve price).
local function auction_event(a)
  local top = tonumber(a.top_bid or '0')
  local status = a.status == 'open' and 'open' or 'closed'
  local out = '{"id":' .. cjson.encode(a.id) .. ',"product":' .. cjson.encode(a.product) ..
    ',"status":"' .. status .. '","top_bid":' .. (top > 0 and int(top) or 'null') ..
    ',"bidder":' .. (top > 0 and cjson.encode(a.bidder_name) or 'null') ..
    ',"ends_at":' .. int(tonumber(a.ends_at)) .. ',"bids":' .. int(tonumber(a.bids or '0')) ..
    ',"start_price":' .. int(tonumber(a.start_price)) .. ',"increment":' ..
    int(tonumber(a.increment)) .. ',"min_bid":' ..
    int(top > 0 and top + tonumber(a.increment) or tonumber(a.start_price)) ..
    ',"reserve_met":' .. tostring(top > 0 and top >= tonumber(a.reserve or '0')) ..
    ',"sudden_death":' .. tostring(a.sudden_death == '1')
  if status == 'closed' then
    out = out .. ',"outcome":' .. cjson.encode(a.outcome or '') .. ',"order":' ..
      ((a.order or '') ~= '' and cjson.encode(a.order) or 'null')
  end
  return out .. '}'
end
