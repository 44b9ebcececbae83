-- KEYS: specs, version. ARGV: id. Answers 1 if it existed.
local existed = redis.call('HDEL', KEYS[1], ARGV[1])
if existed == 1 then
  redis.call('INCR', KEYS[2])
end
return existed
