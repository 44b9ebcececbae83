-- KEYS: meta, sha, next, bytes. ARGV: name, sha256, size, now, bytes.
-- Answers {1 created | 0 existing, metadata JSON}.
local name = ARGV[1]
local shaf = name .. '/' .. ARGV[2]
local existing = redis.call('HGET', KEYS[2], shaf)
if existing then
  local meta = redis.call('HGET', KEYS[1], name .. '/' .. existing)
  if meta then return {0, meta} end
end
local v = redis.call('HINCRBY', KEYS[3], name, 1)
local f = name .. '/' .. v
local meta = '{"name":' .. cjson.encode(name) .. ',"version":' .. v .. ',"sha256":' .. cjson.encode(ARGV[2])
  .. ',"size":' .. ARGV[3] .. ',"uploaded_at":' .. ARGV[4] .. '}'
redis.call('HSET', KEYS[1], f, meta)
redis.call('HSET', KEYS[2], shaf, v)
redis.call('HSET', KEYS[4], f, ARGV[5])
return {1, meta}
