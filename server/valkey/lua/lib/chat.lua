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
-- `<cseq>-0`, field `k` = t) and publish it on the room channel. `last` is the session's
-- current `cseq` (the caller read it with the rest of the session). The XADD itself trims
-- the stream to the last CHAT_MAX sequence numbers (MINID), and `chat_floor` records that
-- bound: the lowest cseq a recovery may still start from (entries removed by moderation
-- are holes above it, not a trim). `d` may be a function of the new cseq (a message's id
-- is its cseq). Three calls. Returns cseq, event.
local function chat_emit(t, d, last)
  local cseq = tonumber(last or '0') + 1
  local floor = math.max(1, cseq - CHAT_MAX + 1)
  if type(d) == 'function' then d = d(cseq) end
  local ev = '{"t":"' .. t .. '","cseq":' .. cseq .. ',"ts":' .. int(NOW) .. ',"d":' .. d .. '}'
  redis.call('HSET', K_SESSION, 'cseq', cseq, 'chat_floor', floor)
  redis.call('XADD', K_CHAT, 'MINID', '=', floor .. '-0', cseq .. '-0', 'e', ev, 'k', t)
  redis.call('SPUBLISH', K_CHANNEL, ev)
  return cseq, ev
end

-- True when `user` is the session's creator or one of its moderators (KEYS given).
local function is_moderator(creator, user, k_moderators)
  return creator == user or redis.call('SISMEMBER', k_moderators, user) == 1
end
