-- KEYS: sinks (records hash), leases (hash), the sink's redelivery list
-- (stream), dlq (stream). ARGV: sink, the DLQ `s` field (`"sink:<name>"`),
-- the DLQ `m` field, most entries to move.
-- Deletes the sink's record and lease (so a DLQ replay no longer sends it
-- anything), then moves up to ARGV[4] entries of its redelivery list back
-- to the DLQ, deleting the list once empty. Answers how many are left (the
-- caller runs it again until none are).
-- Everything is checked before the first write: an entry without its event
-- (field `e`) is named in the error and nothing is deleted or moved.
local count = tonumber(ARGV[4])
if not count or count < 1 then
  return redis.error_reply('sink_forget: the most entries to move must be a positive number, not ' .. tostring(ARGV[4]))
end
local entries = redis.call('XRANGE', KEYS[3], '-', '+', 'COUNT', count)
local events = {}
for i, entry in ipairs(entries) do
  local fields = entry[2]
  for j = 1, #fields, 2 do
    if fields[j] == 'e' then
      events[i] = fields[j + 1]
    end
  end
  if events[i] == nil then
    return redis.error_reply('sink_forget: redelivery entry ' .. entry[1] .. ' of ' .. KEYS[3] .. ' has no event (field e); nothing was moved')
  end
end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
for i, entry in ipairs(entries) do
  redis.call('XADD', KEYS[4], '*', 'e', events[i], 's', ARGV[2], 'm', ARGV[3])
  redis.call('XDEL', KEYS[3], entry[1])
end
local left = redis.call('XLEN', KEYS[3])
if left == 0 then
  redis.call('UNLINK', KEYS[3])
end
return left
