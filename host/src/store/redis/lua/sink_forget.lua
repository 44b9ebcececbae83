-- KEYS: sinks (records hash), leases (hash), the sink's redelivery list
-- (stream), dlq (stream). ARGV: sink, the DLQ `s` field (`"sink:<name>"`),
-- the DLQ `m` field, most entries to move.
-- Deletes the sink's record and lease (so a DLQ replay no longer sends it
-- anything), then moves up to ARGV[4] entries of its redelivery list back
-- to the DLQ, deleting the list once empty. Answers how many are left (the
-- caller runs it again until none are).
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
local entries = redis.call('XRANGE', KEYS[3], '-', '+', 'COUNT', tonumber(ARGV[4]))
for _, entry in ipairs(entries) do
  local fields = entry[2]
  for j = 1, #fields, 2 do
    if fields[j] == 'e' then
      redis.call('XADD', KEYS[4], '*', 'e', fields[j + 1], 's', ARGV[2], 'm', ARGV[3])
    end
  end
  redis.call('XDEL', KEYS[3], entry[1])
end
local left = redis.call('XLEN', KEYS[3])
if left == 0 then
  redis.call('UNLINK', KEYS[3])
end
return left
