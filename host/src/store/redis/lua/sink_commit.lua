-- KEYS: leases (hash), sinks (hash), dlq (stream), the sink's redelivery
-- list (stream). ARGV: sink, holder, record JSON, number of DLQ entries,
-- then per entry its `e`, `s`, `m` fields, then redelivery ids to remove.
-- Checks the lease first (nothing is written unless the holder still has
-- it: a runner that paused past its lease cannot move the position back),
-- then writes with commands that cannot fail. Answers 1 if recorded.
local current = redis.call('HGET', KEYS[1], ARGV[1])
if not current then
  return 0
end
local holder = string.match(current, '^(.*)|%d+$')
if holder ~= ARGV[2] then
  return 0
end
local dead = tonumber(ARGV[4])
for i = 0, dead - 1 do
  local b = 5 + i * 3
  redis.call('XADD', KEYS[3], '*', 'e', ARGV[b], 's', ARGV[b + 1], 'm', ARGV[b + 2])
end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
local first = 5 + dead * 3
for s = first, #ARGV, 1000 do
  redis.call('XDEL', KEYS[4], unpack(ARGV, s, math.min(s + 999, #ARGV)))
end
return 1
