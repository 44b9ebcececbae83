-- KEYS: dlq. ARGV: the id of an entry, then its new `e`, `s`, `m` fields.
-- Replaces the entry by one with those fields at the stream's end, if it is
-- still there (else nothing: a replay or a delete took it meanwhile).
-- Answers 1 if replaced.
if redis.call('XDEL', KEYS[1], ARGV[1]) == 0 then
  return 0
end
redis.call('XADD', KEYS[1], '*', 'e', ARGV[2], 's', ARGV[3], 'm', ARGV[4])
return 1
