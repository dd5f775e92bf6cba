-- One chat message: every rule decided and the message sequenced, stored and published
-- in one step (a refused message is never shown).
-- KEYS[1..3] chat lane (lib/chat.lua)   KEYS[4] moderation hash   KEYS[5] moderators
-- KEYS[6] chat rate hash (per-user token buckets)
-- ARGV[1] chat-lane events kept   ARGV[2] user id   ARGV[3] event data prefix: the JSON
-- object `{"user":…,"name":…,"text":…` without its closing brace (the id is added here)
-- ARGV[4] the text's words, casefolded, each surrounded by spaces (" a b ")
-- ARGV[5] '1' when the text holds a link   ARGV[6] rate per s   ARGV[7] burst
-- Returns: {cseq, event JSON}
-- Fails: LC not_found | not_live | banned | muted {remaining_s} | blocked |
--        rate_limited {retry_after_ms, slow_mode_s?}
--!include lib/chat.lua
local K_MOD, K_MODS, K_RATE = KEYS[4], KEYS[5], KEYS[6]
local user, words, has_link = ARGV[2], ARGV[4], ARGV[5] == '1'
local rate, burst = tonumber(ARGV[6]), tonumber(ARGV[7])

local s = redis.call('HMGET', K_SESSION, 'status', 'creator', 'cseq')
if not s[1] then return fail('not_found', 'session does not exist') end
if s[1] ~= 'live' then return fail('not_live', 'chat is open while the session is live') end
local m = redis.call('HMGET', K_MOD, 'ban:' .. user, 'mute:' .. user, 'slow_s',
  'last:' .. user, 'words', 'links')
if m[1] then return fail('banned', 'you are banned from this session') end
if m[2] and tonumber(m[2]) > NOW then
  return fail('muted', {message = 'you are timed out in this chat',
    remaining_s = math.ceil((tonumber(m[2]) - NOW) / 1000)})
end
if m[5] then
  for _, w in ipairs(cjson.decode(m[5])) do
    if string.find(words, ' ' .. w .. ' ', 1, true) then
      return fail('blocked', 'the message has a word this session does not allow')
    end
  end
end
local slow = tonumber(m[3] or '0')
local privileged = nil
local function privileged_user()
  if privileged == nil then privileged = is_moderator(s[2], user, K_MODS) end
  return privileged
end
if has_link and m[6] ~= '1' and not privileged_user() then
  return fail('blocked', 'links are not allowed in this chat')
end
if slow > 0 and m[4] and NOW - tonumber(m[4]) < slow * 1000 and not privileged_user() then
  return fail('rate_limited', {message = 'slow mode: one message every ' .. slow .. ' s',
    retry_after_ms = slow * 1000 - (NOW - tonumber(m[4])), slow_mode_s = slow})
end
local bucket = redis.call('HGET', K_RATE, user)
local tokens, stamp = burst, NOW
if bucket then
  local t, at = string.match(bucket, '^([%d%.]+):(%d+)$')
  tokens = math.min(burst, tonumber(t) + (NOW - tonumber(at)) * rate / 1000)
end
if tokens < 1 then
  return fail('rate_limited', {message = 'too many chat messages; slow down',
    retry_after_ms = math.ceil((1 - tokens) * 1000 / rate)})
end
redis.call('HSET', K_RATE, user, string.format('%.4f', tokens - 1) .. ':' .. int(stamp))
if slow > 0 then redis.call('HSET', K_MOD, 'last:' .. user, int(NOW)) end
return {chat_emit('chat', function(cseq) return ARGV[3] .. ',"id":' .. cseq .. '}' end, s[3])}
