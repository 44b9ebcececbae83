-- KEYS: dlq. ARGV: n. Answers how many were deleted.
local entries = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', tonumber(ARGV[1]))
for _, entry in ipairs(entries) do
  redis.call('XDEL', KEYS[1], entry[1])
end
return #entries
