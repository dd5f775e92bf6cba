-- Replace a session's moderators (its creator only), with an audit entry.
-- KEYS[1] session hash   KEYS[2] moderators set   KEYS[3] audit list
-- ARGV[1] caller   ARGV[2] audit max   ARGV[3..] the moderators' user ids
-- Returns: how many moderators the session has now
-- Fails: LC not_found | forbidden
--!include lib/util.lua
local creator = redis.call('HGET', KEYS[1], 'creator')
if not creator then return fail('not_found', 'session does not exist') end
if creator ~= ARGV[1] then return fail('forbidden', 'only the session creator can name moderators') end
redis.call('DEL', KEYS[2])
local ids = {}
for i = 3, #ARGV do ids[#ids + 1] = ARGV[i] end
if #ids > 0 then redis.call('SADD', KEYS[2], unpack(ids)) end
redis.call('RPUSH', KEYS[3], cjson.encode({by = ARGV[1], action = 'moderators',
  target = '', value = table.concat(ids, ','), at = NOW}))
redis.call('LTRIM', KEYS[3], -tonumber(ARGV[2]), -1)
return #ids
