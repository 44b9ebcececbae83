-- KEYS: queue, depth, counters. ARGV: max_depth, n, rejected, chunk JSON.
-- Answers {1 accepted | 0 full, depth}.
local depth = tonumber(redis.call('GET', KEYS[2]) or '0')
local n = tonumber(ARGV[2])
local rejected = tonumber(ARGV[3])
if n > 0 then
  if depth + n > tonumber(ARGV[1]) then
    return {0, depth}
  end
  redis.call('XADD', KEYS[1], '*', 'e', ARGV[4], 'n', ARGV[2])
  depth = redis.call('INCRBY', KEYS[2], n)
  redis.call('HINCRBY', KEYS[3], 'accepted', n)
end
if rejected > 0 then
  redis.call('HINCRBY', KEYS[3], 'rejected', rejected)
end
return {1, depth}
