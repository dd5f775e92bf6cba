-- Append one room event to a session's history and publish it.
-- KEYS[1..3] room (lib/context.lua)
-- ARGV[1..3] context   ARGV[4] event type   ARGV[5] event data (JSON text)
-- Returns: seq, or not_found when the session does not exist.
--!include lib/context.lua
--!include lib/room.lua
if redis.call('EXISTS', K_SESSION) == 0 then return fail('not_found', 'session does not exist') end
return emit(ARGV[4], ARGV[5])
