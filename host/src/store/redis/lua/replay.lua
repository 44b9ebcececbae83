-- KEYS: dlq, queue, depth. ARGV: mode, events per queue entry, then for
-- mode `ids` the ids, for mode `range` start, end, count.
-- Answers {replayed, failed}.
local function field(fields, name)
  for j = 1, #fields, 2 do
    if fields[j] == name then return fields[j + 1] end
  end
  return nil
end
local entries = {}
local failed = 0
if ARGV[1] == 'ids' then
  for j = 3, #ARGV do
    local found = redis.call('XRANGE', KEYS[1], ARGV[j], ARGV[j])
    if #found == 1 then
      entries[#entries + 1] = found[1]
    else
      failed = failed + 1
    end
  end
else
  entries = redis.call('XRANGE', KEYS[1], ARGV[3], ARGV[4], 'COUNT', tonumber(ARGV[5]))
end
local chunk = tonumber(ARGV[2])
local parts = {}
local n = 0
for _, entry in ipairs(entries) do
  local f = entry[2]
  parts[#parts + 1] = '{"event":' .. field(f, 'e') .. ',"start_stage":' .. field(f, 's') .. ',"attempt":1}'
  redis.call('XDEL', KEYS[1], entry[1])
  n = n + 1
  if #parts >= chunk then
    redis.call('XADD', KEYS[2], '*', 'e', '[' .. table.concat(parts, ',') .. ']', 'n', #parts)
    parts = {}
  end
end
if #parts > 0 then
  redis.call('XADD', KEYS[2], '*', 'e', '[' .. table.concat(parts, ',') .. ']', 'n', #parts)
end
if n > 0 then
  redis.call('INCRBY', KEYS[3], n)
end
return {n, failed}
