-- The chat lane, pasted by `--!include lib/chat.lua`. Its head:
--   KEYS[1] session hash   KEYS[2] chat stream   KEYS[3] room channel (sharded pub/sub)
--   ARGV[1] chat-lane events kept (the recovery window)
-- Chat-lane events (`chat`, `chat_deleted`, `banned`) carry `cseq`, their own gap-free
-- sequence per session (the session's `cseq` field), not the room's `seq`: a chat storm
-- neither trims the room's history nor shows pins-only viewers gaps (docs/protocol.md).
--!include lib/util.lua
local K_SESSION, K_CHAT, K_CHANNEL = KEYS[1], KEYS[2], KEYS[3]
local CHAT_MAX = tonumber(ARGV[1])

-- Append one chat-lane event (type t, data d as JSON text) to the chat stream (id
-- `<cseq>-0`, field `k` = t) and publish it on the room channel. The stream keeps
-- CHAT_MAX entries; `chat_floor` is the lowest cseq a recovery may still start from
-- (entries removed by moderation are holes above it, not a trim). `d` may be a function
-- of the new cseq (a message's id is its cseq). Returns cseq, event.
local function chat_emit(t, d)
  local cseq = redis.call('HINCRBY', K_SESSION, 'cseq', 1)
  if type(d) == 'function' then d = d(cseq) end
  local ev = '{"t":"' .. t .. '","cseq":' .. cseq .. ',"ts":' .. int(NOW) .. ',"d":' .. d .. '}'
  redis.call('XADD', K_CHAT, cseq .. '-0', 'e', ev, 'k', t)
  if redis.call('XLEN', K_CHAT) > CHAT_MAX then
    local oldest = redis.call('XRANGE', K_CHAT, '-', '+', 'COUNT', 1)[1][1]
    redis.call('XDEL', K_CHAT, oldest)
    redis.call('HSET', K_SESSION, 'chat_floor', tonumber(string.match(oldest, '^(%d+)')) + 1)
  end
  redis.call('SPUBLISH', K_CHANNEL, ev)
  return cseq, ev
end

-- True when `user` is the session's creator or one of its moderators (KEYS given).
local function is_moderator(creator, user, k_moderators)
  return creator == user or redis.call('SISMEMBER', k_moderators, user) == 1
end
