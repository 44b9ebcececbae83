-- KEYS: queue, depth, counters, bytes. ARGV: max_depth, n, rejected, chunk
-- JSON, max_bytes. Answers {1 accepted | 0 full, depth, queued bytes}.
-- Everything is read and decided first; the writes that follow cannot fail
-- (computed values are SET, nothing is incremented in place), so the
-- script never stops half-way. A stored counter that is not a number reads
-- as 0 (as `counters` reads it).
local function num(v)
  local x = tonumber(v)
  if x == nil or x ~= x or x == math.huge or x == -math.huge then return 0 end
  return x
end
local depth = num(redis.call('GET', KEYS[2]))
local bytes = num(redis.call('GET', KEYS[4]))
local n = tonumber(ARGV[2])
local rejected = tonumber(ARGV[3])
local size = string.len(ARGV[4])
local counts = redis.call('HMGET', KEYS[3], 'accepted', 'rejected')
if n > 0 and (depth + n > tonumber(ARGV[1]) or bytes + size > tonumber(ARGV[5])) then
  return {0, depth, bytes}
end
if n > 0 then
  redis.call('XADD', KEYS[1], '*', 'e', ARGV[4], 'n', ARGV[2])
  depth = depth + n
  bytes = bytes + size
  redis.call('SET', KEYS[2], string.format('%d', depth))
  redis.call('SET', KEYS[4], string.format('%d', bytes))
  redis.call('HSET', KEYS[3], 'accepted', string.format('%d', num(counts[1]) + n))
end
if rejected > 0 then
  redis.call('HSET', KEYS[3], 'rejected', string.format('%d', num(counts[2]) + rejected))
end
return {1, depth, bytes}
