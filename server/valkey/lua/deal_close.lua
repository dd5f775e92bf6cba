-- Close a session's deal on a product (its remaining units return to the stock).
-- Idempotent: any node may call it; a deal closed before is reported again, so the caller
-- can announce it (pin.lua / deal_announce.lua announce each deal once).
-- KEYS[1] product hash   KEYS[2] the product's deals hash
-- ARGV[1] session id   ARGV[2] deal id, or '' for whatever deal is open
-- ARGV[3] '1': only when its ends_at has passed
-- Returns: {'closed', deal JSON} (closed by this call) | {'was_closed', deal JSON}
--        | {'open', ''} (not due yet) | {'unknown', ''}
--!include lib/util.lua
local K_PRODUCT, K_DEALS = KEYS[1], KEYS[2]
--!include lib/deal.lua
local d = get_deal(ARGV[1])
if not d or (ARGV[2] ~= '' and d.id ~= ARGV[2]) then return {'unknown', ''} end
if d.status ~= 'open' then return {'was_closed', cjson.encode(d)} end
if ARGV[3] == '1' and tonumber(d.ends_at) > NOW then return {'open', ''} end
return {'closed', cjson.encode(close_deal(ARGV[1]))}
