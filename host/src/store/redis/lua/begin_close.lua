-- KEYS: clock. ARGV: now, gate deadline. Answers {wm, maxts, last, gate}
-- after taking the gate, or nil if someone holds it.
local gate = redis.call('HGET', KEYS[1], 'gate')
if gate and tonumber(gate) > tonumber(ARGV[1]) then
  return nil
end
redis.call('HSET', KEYS[1], 'gate', ARGV[2])
return redis.call('HMGET', KEYS[1], 'wm', 'maxts', 'last', 'gate')
