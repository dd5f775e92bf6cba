-- Close a session's open deal if it has reached ends_at (or unconditionally with 'force').
-- Idempotent: any node may call it; only the first call closes and emits `deal closed`.
-- KEYS[1] deal hash
-- ARGV[1..4] context (lib/context.lua)   ARGV[5] session id   ARGV[6] 'due' | 'force'
-- Returns: 1 when this call closed the deal, 0 otherwise.
--!include lib/context.lua
--!include lib/keys.lua
--!include lib/room.lua

local d = load_hash(KEYS[1])
if not d or d.status ~= 'open' then return 0 end
if ARGV[6] ~= 'force' and tonumber(d.ends_at) > NOW then return 0 end
return close_deal(ARGV[5]) and 1 or 0
