-- KEYS: retry, queue. ARGV: now, max events. Answers how many moved.
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
if #due == 0 then
  return 0
end
local parts = {}
for j, member in ipairs(due) do
  local sep = string.find(member, '|', 1, true)
  parts[j] = string.sub(member, sep + 1)
  redis.call('ZREM', KEYS[1], member)
end
redis.call('XADD', KEYS[2], '*', 'e', '[' .. table.concat(parts, ',') .. ']', 'n', #due)
return #due
