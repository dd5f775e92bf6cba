-- Key names, mirroring server/keys.py (tests/test_lua_keys.py checks they agree).
-- PREFIX must be defined by the including script before this file.
local function k_session(sid) return PREFIX .. ':{s:' .. sid .. '}:session' end
local function k_history(sid) return PREFIX .. ':{s:' .. sid .. '}:history' end
local function k_channel(sid) return PREFIX .. ':{s:' .. sid .. '}:events' end
local function k_counters(sid) return PREFIX .. ':{s:' .. sid .. '}:counters' end
local function k_presence(sid) return PREFIX .. ':{s:' .. sid .. '}:presence' end
local function k_pin_log(sid) return PREFIX .. ':{s:' .. sid .. '}:pins' end
local function k_deal(sid) return PREFIX .. ':{s:' .. sid .. '}:deal' end
local function k_deal_buyers(sid, deal_id) return PREFIX .. ':{s:' .. sid .. '}:deal:' .. deal_id .. ':buyers' end
local function k_rates(sid) return PREFIX .. ':{s:' .. sid .. '}:rates' end
local function k_product(pid) return PREFIX .. ':{p:' .. pid .. '}:product' end
local function k_cart(uid) return PREFIX .. ':{u:' .. uid .. '}:cart' end
local function k_touches(uid) return PREFIX .. ':{u:' .. uid .. '}:touches' end
local function k_idem(uid, key) return PREFIX .. ':{u:' .. uid .. '}:idem:' .. key end
local function k_user_orders(uid) return PREFIX .. ':{u:' .. uid .. '}:orders' end
local function k_ledger(uid) return PREFIX .. ':{u:' .. uid .. '}:ledger' end
local function k_balance(uid) return PREFIX .. ':{u:' .. uid .. '}:balance' end
local function k_user_channel(uid) return PREFIX .. ':{u:' .. uid .. '}:private' end
local function k_order(oid) return PREFIX .. ':{o:' .. oid .. '}:order' end
local function k_refunds(oid) return PREFIX .. ':{o:' .. oid .. '}:refunds' end
local function k_orders_stream() return PREFIX .. ':orders' end
local function k_open_deals() return PREFIX .. ':deals:open' end
