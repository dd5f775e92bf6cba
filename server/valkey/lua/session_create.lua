-- Create a session if its id is free.
-- KEYS[1] session hash
-- ARGV[1] id  ARGV[2] creator  ARGV[3] kind  ARGV[4] title  ARGV[5] showcase (JSON array)
-- ARGV[6] created_at (ms)  ARGV[7] epoch id  ARGV[8] scheduled_at (ms) or ''
-- ARGV[9] stream_url or ''  ARGV[10] stream_clock_offset_ms
-- Returns: 1 when created, 0 when the id already exists (nothing changes).
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'id', ARGV[1], 'creator', ARGV[2], 'kind', ARGV[3],
  'title', ARGV[4], 'showcase', ARGV[5], 'status', 'scheduled', 'created_at', ARGV[6],
  'started_at', '', 'ended_at', '', 'pin', '', 'pin_deal', '', 'pin_deal_product', '',
  'seq', 0, 'epoch', ARGV[7], 'scheduled_at', ARGV[8] or '', 'stream_url', ARGV[9] or '',
  'stream_clock_offset_ms', ARGV[10] or '0')
return 1
