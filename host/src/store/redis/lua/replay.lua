-- KEYS: dlq, queue, depth, bytes, sinks (the sink records hash). ARGV:
-- mode, events per queue entry, then for mode `ids` the ids, for mode
-- `range` start, end, count.
-- Answers {replayed, failed, gone}. Reads and builds every queue entry
-- first (a DLQ entry lacking its fields is left in place and counted as
-- failed); the writes after cannot fail, so the script never stops half-way.
-- An entry a sink failed (`s` is "sink:<name>") goes to that sink's
-- redelivery stream (`<pipeline base>:sink:<name>:replay`, under the same
-- hash tag as the DLQ key), not to the queue: it is delivered to that sink
-- only. If that sink has no record (it is no longer in the spec: a forget
-- deleted it) the entry is left in place and its id answered in `gone`, for
-- the caller to rewrite with an error saying so.
local function field(fields, name)
  for j = 1, #fields, 2 do
    if fields[j] == name then return fields[j + 1] end
  end
  return nil
end
local function num(v)
  local x = tonumber(v)
  if x == nil or x ~= x or x == math.huge or x < 0 then return 0 end
  return x
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
local chunks, ids = {}, {}
local parts = {}
local to_sinks = {}
local gone = {}
local queued = 0
for _, entry in ipairs(entries) do
  local e, s = field(entry[2], 'e'), field(entry[2], 's')
  local sink = s and string.match(s, '^"sink:([a-z0-9-]+)"$')
  if e and sink and redis.call('HEXISTS', KEYS[5], sink) == 0 then
    gone[#gone + 1] = entry[1]
  elseif e and sink then
    to_sinks[#to_sinks + 1] = {sink, e}
    ids[#ids + 1] = entry[1]
  elseif e and s then
    queued = queued + 1
    parts[#parts + 1] = '{"event":' .. e .. ',"start_stage":' .. s .. ',"attempt":1}'
    ids[#ids + 1] = entry[1]
    if #parts >= chunk then
      chunks[#chunks + 1] = parts
      parts = {}
    end
  else
    failed = failed + 1
  end
end
if #parts > 0 then
  chunks[#chunks + 1] = parts
end
if #ids == 0 then
  return {0, failed, gone}
end
local depth = num(redis.call('GET', KEYS[3]))
local bytes = num(redis.call('GET', KEYS[4]))
for s = 1, #ids, 1000 do
  redis.call('XDEL', KEYS[1], unpack(ids, s, math.min(s + 999, #ids)))
end
local base = string.sub(KEYS[1], 1, -5)
for _, item in ipairs(to_sinks) do
  redis.call('XADD', base .. ':sink:' .. item[1] .. ':replay', '*', 'e', item[2])
end
for _, c in ipairs(chunks) do
  local json = '[' .. table.concat(c, ',') .. ']'
  redis.call('XADD', KEYS[2], '*', 'e', json, 'n', #c)
  bytes = bytes + string.len(json)
end
redis.call('SET', KEYS[3], string.format('%d', depth + queued))
redis.call('SET', KEYS[4], string.format('%d', bytes))
return {#ids, failed, gone}
