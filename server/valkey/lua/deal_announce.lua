-- Tell a room that its deal closed (closed in the product's slot by deal_close.lua or a
-- purchase), once per deal id: any node sweeping due deals may ask again.
-- KEYS[1..3] room (lib/context.lua)
-- ARGV[1..3] context   ARGV[4] the closed deal's JSON
-- Returns: the seq of the `deal` event, 0 when it was announced before
--!include lib/context.lua
--!include lib/room.lua
if redis.call('EXISTS', K_SESSION) == 0 then return 0 end
return announce_closed_deal(ARGV[4])
