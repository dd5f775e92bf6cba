-- Set a session's stream: its HLS playlist URL and the offset of its clock (its creator
-- only). A field passed as '-' keeps its value; a stream_url of '' removes it.
-- KEYS[1] session hash
-- ARGV[1] caller id   ARGV[2] stream_url, '' or '-'   ARGV[3] stream_clock_offset_ms or '-'
-- Returns: 1
-- Fails: LC not_found | forbidden
--!include lib/util.lua
local creator = redis.call('HGET', KEYS[1], 'creator')
if not creator then return fail('not_found', 'session does not exist') end
if creator ~= ARGV[1] then return fail('forbidden', 'only the session creator can do this') end
if ARGV[2] ~= '-' then redis.call('HSET', KEYS[1], 'stream_url', ARGV[2]) end
if ARGV[3] ~= '-' then redis.call('HSET', KEYS[1], 'stream_clock_offset_ms', ARGV[3]) end
return 1
