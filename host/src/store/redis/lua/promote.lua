-- KEYS: retry, queue, bytes. ARGV: now, max events. Answers how many moved.
-- Reads and builds the entry first; the writes after cannot fail. A waiting
-- retry counts its queued event JSON in the queued bytes; joined into one
-- entry (`[a,b,...]`), k of them take k + 1 bytes more.
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
local parts, members = {}, {}
for _, member in ipairs(due) do
  local sep = string.find(member, '|', 1, true)
  -- Every member is `<hex>|<event JSON>`; one that is not stays where it is.
  if sep then
    parts[#parts + 1] = string.sub(member, sep + 1)
    members[#members + 1] = member
  end
end
if #parts == 0 then
  return 0
end
local bytes = tonumber(redis.call('GET', KEYS[3]))
if bytes == nil or bytes ~= bytes or bytes == math.huge or bytes < 0 then bytes = 0 end
for s = 1, #members, 1000 do
  redis.call('ZREM', KEYS[1], unpack(members, s, math.min(s + 999, #members)))
end
redis.call('XADD', KEYS[2], '*', 'e', '[' .. table.concat(parts, ',') .. ']', 'n', #parts)
redis.call('SET', KEYS[3], string.format('%d', bytes + #parts + 1))
return #parts
