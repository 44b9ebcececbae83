-- KEYS: alerts stream, the window's alerted set. ARGV: group, window,
-- start, alert JSON, trim-before ms, retention ms, now. Answers 1 if appended.
-- The alert is appended before it is marked raised, so a failure can only
-- come before the first write (the appends cannot fail: the one with the
-- caller's clock falls back to Redis's own).
if redis.call('SISMEMBER', KEYS[2], ARGV[1]) == 1 then
  return 0
end
-- Ids carry the caller's clock so retention is measured in it; a clock
-- behind the stream's last id falls back to Redis's own.
local ok = pcall(redis.call, 'XADD', KEYS[1], ARGV[7] .. '-*', 'w', ARGV[2], 's', ARGV[3], 'g', ARGV[1], 'j', ARGV[4])
if not ok then
  redis.call('XADD', KEYS[1], '*', 'w', ARGV[2], 's', ARGV[3], 'g', ARGV[1], 'j', ARGV[4])
end
redis.call('SADD', KEYS[2], ARGV[1])
redis.call('PEXPIRE', KEYS[2], ARGV[6])
if tonumber(ARGV[5]) > 0 then
  redis.call('XTRIM', KEYS[1], 'MINID', ARGV[5])
end
return 1
