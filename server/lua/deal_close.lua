-- Close a session's open deal once it has reached ends_at.
-- Idempotent: any node may call it; only the first call closes and emits `deal closed`.
-- KEYS[1] deal hash
-- ARGV[1..4] context (lib/context.lua)   ARGV[5] session id
-- Returns: the deal's product id when this call closed it, '' otherwise.
--!include lib/context.lua
--!include lib/keys.lua
--!include lib/room.lua

local d = load_hash(KEYS[1])
if not d or d.status ~= 'open' or tonumber(d.ends_at) > NOW then return '' end
return close_deal(ARGV[5])
