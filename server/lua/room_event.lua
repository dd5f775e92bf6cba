-- Append one room event to a session's history and publish it.
-- KEYS[1] session hash   KEYS[2] history stream
-- ARGV[1..4] room convention (lib/room.lua)
-- ARGV[5] event type     ARGV[6] event data (JSON text)
-- Returns: seq, or not_found when the session does not exist.
--!include lib/room.lua

if redis.call('EXISTS', SESSION) == 0 then return fail('not_found', 'session does not exist') end
return emit(ARGV[5], ARGV[6])
