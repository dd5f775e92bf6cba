-- Giveaway helpers, pasted by `--!include lib/giveaway.lua` (after lib/room.lua).
-- A giveaway is the hash KEYS[4] of its session's slot (keys.giveaway): product, winners
-- (how many), ends_at, keyword, status open|drawn|closed, entries, and once drawn: seed,
-- eligible (the frozen entrant ids, sorted, newline-joined), then winner_names (JSON).

-- The `giveaway` room event's data.
local function giveaway_event(g)
  return '{"id":' .. cjson.encode(g.id) .. ',"product":' .. cjson.encode(g.product) ..
    ',"status":"' .. (g.status == 'open' and 'open' or 'closed') .. '","ends_at":' ..
    int(tonumber(g.ends_at)) .. ',"winner_count":' .. int(tonumber(g.winners)) ..
    ',"entries":' .. int(tonumber(g.entries or '0')) .. ',"keyword":' ..
    ((g.keyword or '') ~= '' and cjson.encode(g.keyword) or 'null') ..
    ',"winners":' .. (g.status == 'closed' and g.winner_names or '[]') .. '}'
end
