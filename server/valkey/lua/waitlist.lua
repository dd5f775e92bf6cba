-- A product's waitlist: join, leave, and expire due holds (passing each unit to the next
-- user in line), all in the product's slot. See docs/architecture.md "Waitlists".
-- KEYS[1] product hash   KEYS[2] waitlist (sorted set)   KEYS[3] holds hash
-- ARGV[1] 'join' | 'leave' | 'expire'   ARGV[2] user ('' for expire)
-- ARGV[3] the batch id new holds get   ARGV[4] hold duration (ms)
-- ARGV[5] most users that may wait (join)   ARGV[6] the due batch (expire) or ''
-- Returns: join  {'waiting', place (1 = next), users waiting} | {'holding', hold_until, 0}
--          leave {'left', new holders JSON, hold_until, units returned to the stock}
--          expire {'expired', new holders JSON, hold_until, units returned to the stock,
--                  holds of the due batch left, when to look at that batch next (ms, 0: never)}
-- Fails: LC not_found | conflict (in stock) | limit_exceeded (the waitlist is full)
--!include lib/util.lua
local K_PRODUCT, K_WAITLIST, K_HOLDS = KEYS[1], KEYS[2], KEYS[3]
--!include lib/waitlist.lua
local op, user, batch, hold_ms = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local hold_until = NOW + hold_ms
if redis.call('EXISTS', K_PRODUCT) == 0 then
  return fail('not_found', {message = 'product does not exist'})
end

if op == 'join' then
  local held = redis.call('HGET', K_HOLDS, user)
  if held then return {'holding', tonumber(cjson.decode(held).hold_until), 0} end
  local place = redis.call('ZRANK', K_WAITLIST, user)
  if not place then
    if tonumber(redis.call('HGET', K_PRODUCT, 'stock')) > 0 then
      return fail('conflict', {message = 'the product is in stock: buy it instead'})
    end
    if redis.call('ZCARD', K_WAITLIST) >= tonumber(ARGV[5]) then
      return fail('limit_exceeded', {message = 'the waitlist is full', limit = tonumber(ARGV[5])})
    end
    redis.call('ZADD', K_WAITLIST, redis.call('HINCRBY', K_PRODUCT, 'wl_seq', 1), user)
    place = redis.call('ZRANK', K_WAITLIST, user)
  end
  return {'waiting', place + 1, redis.call('ZCARD', K_WAITLIST)}
end

if op == 'leave' then
  redis.call('ZREM', K_WAITLIST, user)
  local raw = redis.call('HGET', K_HOLDS, user)
  local given, returned = {}, 0
  if raw and cjson.decode(raw).res == '' then
    drop_hold(user)
    given = offer(1, batch, hold_until)
    returned = 1 - #given
  end
  return {'left', users_json(given), hold_until, returned}
end

-- expire: every due hold that is not in a purchase in flight ends; its unit goes to the
-- next user in line, or back to the stock
local flat = redis.call('HGETALL', K_HOLDS)
local due, left, next_at = 0, 0, 0
for i = 1, #flat, 2 do
  local h = cjson.decode(flat[i + 1])
  local ends = tonumber(h.hold_until)
  if h.res == '' and ends <= NOW then
    drop_hold(flat[i])
    due = due + 1
  elseif h.batch == ARGV[6] then
    left = left + 1
    -- a purchase in flight holds it: look again shortly (it is bought or comes back)
    local at = (ends <= NOW) and (NOW + 1000) or ends
    if next_at == 0 or at < next_at then next_at = at end
  end
end
local given = offer(due, batch, hold_until)
return {'expired', users_json(given), hold_until, due - #given, left, next_at}
