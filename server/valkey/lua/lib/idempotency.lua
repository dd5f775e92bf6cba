-- The idempotency rule: its one implementation (`--!include lib/idempotency.lua` after
-- lib/util.lua). order_begin.lua, order_place.lua and order_peek.lua apply it; nothing
-- else decides what a request may do with its key's order record (docs/protocol.md,
-- "Orders and idempotency", has the table).
--
-- A request with fingerprint `fp` meets its key's order record, whose status is `status`
-- (nil: no record) and whose stored fingerprint is `stored`:
--
--   status \ fingerprint       same        another
--   none                       new         new
--   pending                    join        conflict
--   failed (not released)      release     release
--   released                   new         new
--   committed                  replay      conflict
--   void (a prize never placed) conflict   conflict
--
--   new      place it: attempt n + 1 (a failed, released attempt binds nothing)
--   join     the attempt in flight is this request's: drive it; its outcome is the answer
--   release  the failed attempt's reservations are released first, then 'new'
--   replay   the committed order is the answer
--   conflict the key names another request (or can never be placed): LC conflict
local function idempotency(status, stored, fp)
  if not status or status == 'released' then return 'new' end
  if status == 'failed' then return 'release' end
  if status == 'void' or stored ~= fp then return 'conflict' end
  if status == 'committed' then return 'replay' end
  return 'join'  -- pending, the same request
end

-- The error reply of a 'conflict' answer.
local function idempotency_conflict()
  return fail('conflict', {message = 'idempotency key reused with a different request'})
end
