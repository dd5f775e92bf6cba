-- Ask (or stop asking) to be told when a session goes live.
-- KEYS[1] session hash   KEYS[2] reminders set
-- ARGV[1] user   ARGV[2] '1' to remind, '0' to undo
-- Returns: 1 when the user is now reminded, 0 when not
-- Fails: LC not_found | conflict (the session is live or has ended)
--!include lib/util.lua
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return fail('not_found', 'session does not exist') end
if ARGV[2] == '0' then redis.call('SREM', KEYS[2], ARGV[1]); return 0 end
if status ~= 'scheduled' then return fail('conflict', 'the session is ' .. status .. ' already') end
redis.call('SADD', KEYS[2], ARGV[1])
return 1
