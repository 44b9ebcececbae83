-- KEYS: queue. ARGV: group, consumer, then the entry ids. Resets the idle
-- time of each id still pending for this consumer (`XCLAIM ... 0 JUSTID`:
-- no delivery counted), so `XAUTOCLAIM` does not take over an entry that
-- is still running. An id pending for another consumer (taken over
-- already) or no longer pending is left alone. Answers how many were
-- refreshed.
local group, consumer = ARGV[1], ARGV[2]
local touched = 0
for i = 3, #ARGV do
  local p = redis.pcall('XPENDING', KEYS[1], group, ARGV[i], ARGV[i], 1)
  if type(p) == 'table' and p.err == nil and #p == 1 and p[1][2] == consumer then
    redis.call('XCLAIM', KEYS[1], group, consumer, 0, ARGV[i], 'JUSTID')
    touched = touched + 1
  end
end
return touched
