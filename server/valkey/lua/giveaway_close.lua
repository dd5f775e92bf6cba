-- Draw and close a giveaway once, in its session's slot; any node may ask any number of
-- times.
--   'freeze'  an open giveaway past its end takes no more entries: the eligible entrants
--             (entered, still joined — a joined score after now — and neither the creator
--             nor one of the session's moderators) are frozen, sorted, with the first caller's seed. Every
--             node then computes the same winners from (seed, eligible) (giveaways.draw).
--   'settle'  a `drawn` giveaway closes with those winners' display names: announced
--             once, counted once.
-- KEYS[1..3] room (lib/context.lua)   KEYS[4] the giveaway hash   KEYS[5] entrants hash
-- KEYS[6] joined users (sorted set)   KEYS[7] session counters   KEYS[8] moderators (set)
-- ARGV[1..3] context   ARGV[4] 'freeze' | 'settle'
-- ARGV[5] freeze: a fresh seed; settle: winners JSON [{entrant, name, order}]
-- ARGV[6] settle: the winners' display names (JSON list); freeze: ''

-- Returns: {state, giveaway JSON (every field)}; state 'absent' | 'open' (not due) |
--          'drawn' | 'closed' | 'closed_now' (this call closed it)
--!include lib/context.lua
--!include lib/room.lua
--!include lib/giveaway.lua
local g = load_hash(KEYS[4])
if not g then return {'absent', '{}'} end
if g.status == 'closed' then return {'closed', cjson.encode(g)} end
if ARGV[4] == 'freeze' then
  if g.status == 'drawn' then return {'drawn', cjson.encode(g)} end
  if NOW < tonumber(g.ends_at) then return {'open', cjson.encode(g)} end
  local excluded = {[g.creator] = true}
  for _, id in ipairs(redis.call('SMEMBERS', KEYS[8])) do excluded[id] = true end
  local eligible = {}
  local flat = redis.call('HKEYS', KEYS[5])
  for _, uid in ipairs(flat) do
    local live = tonumber(redis.call('ZSCORE', KEYS[6], uid) or '0')
    if live > NOW and not excluded[uid] then table.insert(eligible, uid) end
  end
  table.sort(eligible)
  g.status, g.seed, g.eligible, g.drawn_at = 'drawn', ARGV[5], table.concat(eligible, '\n'), int(NOW)
  redis.call('HSET', KEYS[4], 'status', 'drawn', 'seed', g.seed, 'eligible', g.eligible,
    'drawn_at', g.drawn_at)
  return {'drawn', cjson.encode(g)}
end
if g.status ~= 'drawn' then return {g.status, cjson.encode(g)} end
g.status, g.winner_list, g.winner_names = 'closed', ARGV[5], ARGV[6]
redis.call('HSET', KEYS[4], 'status', 'closed', 'winner_list', ARGV[5],
  'winner_names', ARGV[6], 'closed_at', int(NOW))
if redis.call('HGET', K_SESSION, 'giveaway') == g.id then
  redis.call('HSET', K_SESSION, 'giveaway', '')
end
redis.call('HINCRBY', KEYS[7], 'giveaway_entrants', tonumber(g.entries or '0'))
redis.call('HINCRBY', KEYS[7], 'giveaway_winners', #cjson.decode(ARGV[5]))
emit('giveaway', giveaway_event(g))
return {'closed_now', cjson.encode(g)}
