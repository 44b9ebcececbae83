-- KEYS: leases (hash: sink -> "<holder>|<expires ms>"). ARGV: sink, holder,
-- now ms, ttl ms. Takes or renews the sink's lease for the holder unless
-- another holder's lease has not run out; answers 1 if the holder has it.
local current = redis.call('HGET', KEYS[1], ARGV[1])
if current then
  local holder, expires = string.match(current, '^(.*)|(%d+)$')
  if holder and holder ~= ARGV[2] and tonumber(expires) > tonumber(ARGV[3]) then
    return 0
  end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. '|' .. string.format('%d', tonumber(ARGV[3]) + tonumber(ARGV[4])))
return 1
