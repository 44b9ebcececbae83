-- KEYS: meta, sha, bytes. ARGV: name, version. Answers 1 if deleted.
local f = ARGV[1] .. '/' .. ARGV[2]
local meta = redis.call('HGET', KEYS[1], f)
if not meta then return 0 end
local shaf = ARGV[1] .. '/' .. cjson.decode(meta).sha256
redis.call('HDEL', KEYS[1], f)
redis.call('HDEL', KEYS[3], f)
if redis.call('HGET', KEYS[2], shaf) == ARGV[2] then
  redis.call('HDEL', KEYS[2], shaf)
end
return 1
