-- KEYS: clock. ARGV: now, gate deadline. Answers {wm, maxts, last, gate,
-- tok} after taking the gate, or nil if someone holds it. `tok` is the
-- lease's fencing token: one more than the last one handed out, so a pass
-- whose lease was taken again holds a token `finish_close` refuses.
local gate = redis.call('HGET', KEYS[1], 'gate')
if gate and tonumber(gate) > tonumber(ARGV[1]) then
  return nil
end
redis.call('HINCRBY', KEYS[1], 'tok', 1)
redis.call('HSET', KEYS[1], 'gate', ARGV[2])
return redis.call('HMGET', KEYS[1], 'wm', 'maxts', 'last', 'gate', 'tok')
