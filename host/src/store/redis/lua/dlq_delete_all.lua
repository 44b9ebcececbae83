-- KEYS: dlq. Answers how many were deleted.
local n = redis.call('XLEN', KEYS[1])
redis.call('UNLINK', KEYS[1])
return n
