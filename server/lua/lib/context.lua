-- The common ARGV head of every script that emits room events:
--   ARGV[1] key prefix   ARGV[2] history max events   ARGV[3] history max age (ms)
--   ARGV[4] a fresh epoch id (used only if a session has none or lost its history)
local PREFIX, HMAX, HAGE, FRESH_EPOCH = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
