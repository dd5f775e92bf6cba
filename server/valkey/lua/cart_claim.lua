-- A checkout attempt's claim on its buyer's cart (a saga step in the cart's slot, before
-- any unit is reserved). A checkout consumes the cart version it read (cart_read.lua): the
-- claim is refused when the cart changed since (its version moved on — a change, or
-- another checkout's order that took the lines) or while another attempt holds the cart
-- (its claim neither taken nor released yet). So one cart's contents make at most one
-- order: of two checkouts of one cart at once, whatever their idempotency keys, the second
-- gets `conflict`, and its attempt is aborted before it reserved anything. The claim is
-- taken by the order's buyer effects, which remove the lines bought and raise the version
-- (buyer_effects.lua); a failed attempt releases it (cart_release.lua).
-- Idempotent by claim id; a claim released before it was made stays refused.
-- KEYS[1] the cart's version counter
-- KEYS[2] the cart's claims hash: 'live' -> the claim holding the cart;
--         `<order id>#<attempt>` -> 'held' | 'taken' | 'released'
-- ARGV[1] claim id `<order id>#<attempt>`   ARGV[2] the cart version the checkout read
-- Returns: the claim's state after the call: 'held' (or 'taken': a duplicate of an attempt
--          whose order committed)
-- Fails: LC conflict {message, v} (the cart changed since it was read, or another checkout
--        holds it; v: the cart's version now) | conflict with `aborted` (released before it
--        was made: its attempt was abandoned)
--!include lib/util.lua
local K_VERSION, K_CLAIMS = KEYS[1], KEYS[2]
local id = ARGV[1]
local prior = redis.call('HGET', K_CLAIMS, id)
if prior == 'released' then
  return fail('conflict', {message = 'this order attempt was abandoned; retry', aborted = true})
end
if prior then return prior end  -- held or taken: a concurrent duplicate of this attempt
local v = tonumber(redis.call('GET', K_VERSION) or '0')
if v ~= tonumber(ARGV[2]) then
  return fail('conflict', {message = 'the cart changed since checkout read it; ' ..
    'check it and check out again', v = v})
end
if redis.call('HEXISTS', K_CLAIMS, 'live') == 1 then
  return fail('conflict', {message = 'another checkout of this cart is in progress', v = v})
end
redis.call('HSET', K_CLAIMS, id, 'held', 'live', id)
return 'held'
