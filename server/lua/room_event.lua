-- Append one room event to a session's history and publish it.
-- KEYS[1] session hash
-- ARGV[1..4] context (lib/context.lua)   ARGV[5] session id
-- ARGV[6] event type   ARGV[7] event data (JSON text)
-- Returns: seq, or not_found when the session does not exist.
--!include lib/context.lua
--!include lib/keys.lua
--!include lib/room.lua

if redis.call('EXISTS', KEYS[1]) == 0 then return fail('not_found', 'session does not exist') end
return emit_to(ARGV[5], ARGV[6], ARGV[7])
