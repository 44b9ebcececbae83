-- KEYS: specs, version. ARGV: id, spec. Answers 1 if created.
local created = redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('INCR', KEYS[2])
return created
