-- One moderation action by the session's creator or one of its moderators, with its
-- audit entry. A moderator may not act on the creator or on another moderator.
-- KEYS[1..3] chat lane (lib/chat.lua)   KEYS[4] moderation hash   KEYS[5] moderators
-- KEYS[6] audit list
-- ARGV[1] chat-lane events kept   ARGV[2] caller   ARGV[3] action: delete | mute | unmute |
-- ban | unban | slow_mode | blocked_words | links   ARGV[4] target (message id or user; '')
-- ARGV[5] value (seconds; the blocked phrases as a JSON list; '1'/'0')   ARGV[6] audit max
-- Returns: the cseq of the event it published (delete, ban), else 0
-- Fails: LC not_found | forbidden
--!include lib/chat.lua
local K_MOD, K_MODS, K_AUDIT = KEYS[4], KEYS[5], KEYS[6]
local caller, action, target, value = ARGV[2], ARGV[3], ARGV[4], ARGV[5]

local head = redis.call('HMGET', K_SESSION, 'creator', 'cseq')
local creator = head[1]
if not creator then return fail('not_found', 'session does not exist') end
if not is_moderator(creator, caller, K_MODS) then
  return fail('forbidden', 'only the session creator or its moderators can moderate')
end
local on_user = action == 'mute' or action == 'unmute' or action == 'ban' or action == 'unban'
if on_user and (target == creator or (caller ~= creator and
    redis.call('SISMEMBER', K_MODS, target) == 1)) then
  return fail('forbidden', 'the creator and moderators cannot be moderated by a moderator')
end

local cseq = 0
if action == 'delete' then
  local id = target .. '-0'
  local found = redis.call('XRANGE', K_CHAT, id, id)[1]
  if not found or found[2][4] ~= 'chat' then
    return fail('not_found', {message = 'no such message in the chat history', message_id = tonumber(target)})
  end
  redis.call('XDEL', K_CHAT, id)
  cseq = chat_emit('chat_deleted', '{"id":' .. target .. '}', head[2])
elseif action == 'mute' then
  redis.call('HSET', K_MOD, 'mute:' .. target, int(NOW + tonumber(value) * 1000))
elseif action == 'unmute' then
  redis.call('HDEL', K_MOD, 'mute:' .. target)
elseif action == 'ban' then
  redis.call('HSET', K_MOD, 'ban:' .. target, int(NOW))
  cseq = chat_emit('banned', '{"user":' .. cjson.encode(target) .. '}', head[2])
elseif action == 'unban' then
  redis.call('HDEL', K_MOD, 'ban:' .. target)
elseif action == 'slow_mode' then
  redis.call('HSET', K_MOD, 'slow_s', value)
elseif action == 'blocked_words' then
  redis.call('HSET', K_MOD, 'words', value)
elseif action == 'links' then
  redis.call('HSET', K_MOD, 'links', value)
else
  return fail('bad_request', 'unknown moderation action')
end
redis.call('RPUSH', K_AUDIT, cjson.encode({by = caller, action = action, target = target,
  value = value, at = NOW}))
redis.call('LTRIM', K_AUDIT, -tonumber(ARGV[6]), -1)
return cseq
