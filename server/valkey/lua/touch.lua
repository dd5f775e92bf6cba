-- A click: the buyer touched a product in a session (lib/util.lua `touch`, the one writer).
-- KEYS[1] the buyer's touches hash
-- ARGV[1] product   ARGV[2] session
--!include lib/util.lua
touch(KEYS[1], ARGV[1], ARGV[2])
return 1
