-- The common head of every script that emits room events:
--   KEYS[1] session hash   KEYS[2] history stream   KEYS[3] room channel (sharded pub/sub)
--   ARGV[1] history max events   ARGV[2] history max age (ms)
--   ARGV[3] a fresh epoch id (used only if a session has none or lost its history)
local K_SESSION, K_HISTORY, K_CHANNEL = KEYS[1], KEYS[2], KEYS[3]
local HMAX, HAGE, FRESH_EPOCH = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
