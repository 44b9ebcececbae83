-- KEYS: queue, depth, counters, bytes, idempotency record, seen ids.
-- ARGV: max_depth, n, rejected, chunk JSON, max_bytes, now_ms, record's
-- body digest ('' = no record), record's answer, record TTL ms, dedup window
-- ms (0 = off), then, with a dedup window, n pairs (event id, queued event
-- JSON): the chunk is then joined here from the events that are not
-- duplicates (ARGV[4] is unused).
-- Answers {status, depth, queued bytes, duplicates, stored answer}: status
-- 1 accepted | 0 full | 2 replayed (the stored answer) | 3 key reused.
-- Everything is read and decided first; the writes that follow cannot fail
-- (computed values are SET, nothing is incremented in place, every key
-- written was read with its own type's command before), so the script never
-- stops half-way. A stored counter that is not a number reads as 0 (as
-- `counters` reads it).
local function num(v)
  local x = tonumber(v)
  if x == nil or x ~= x or x == math.huge or x == -math.huge then return 0 end
  return x
end
local digest = ARGV[7]
if digest ~= '' then
  local stored = redis.call('HMGET', KEYS[5], 'd', 'n', 'a')
  if stored[1] then
    if stored[1] == digest then return {2, 0, 0, num(stored[2]), stored[3] or ''} end
    return {3, 0, 0, 0, ''}
  end
end
local depth = num(redis.call('GET', KEYS[2]))
local bytes = num(redis.call('GET', KEYS[4]))
local n = tonumber(ARGV[2])
local rejected = tonumber(ARGV[3])
local chunk = ARGV[4]
local now = tonumber(ARGV[6])
local window = tonumber(ARGV[10])
local duplicates = 0
local kept = {}
if window > 0 then
  local seen = {}
  local parts = {}
  for i = 11, 10 + 2 * n, 2 do
    local id = ARGV[i]
    local dup = seen[id]
    if not dup then
      local at = redis.call('ZSCORE', KEYS[6], id)
      dup = at and tonumber(at) > now - window
    end
    if dup then
      duplicates = duplicates + 1
    else
      seen[id] = true
      kept[#kept + 1] = id
      parts[#parts + 1] = ARGV[i + 1]
    end
  end
  n = #parts
  chunk = '[' .. table.concat(parts, ',') .. ']'
end
local size = string.len(chunk)
local counts = redis.call('HMGET', KEYS[3], 'accepted', 'rejected')
if n > 0 and (depth + n > tonumber(ARGV[1]) or bytes + size > tonumber(ARGV[5])) then
  return {0, depth, bytes, 0, ''}
end
if window > 0 then
  local stamp = string.format('%d', now)
  redis.call('ZREMRANGEBYSCORE', KEYS[6], '-inf', string.format('%d', now - window))
  local args = {}
  for i, id in ipairs(kept) do
    args[#args + 1] = stamp
    args[#args + 1] = id
    if #args >= 2000 or i == #kept then
      redis.call('ZADD', KEYS[6], unpack(args))
      args = {}
    end
  end
  redis.call('PEXPIRE', KEYS[6], string.format('%d', window))
else
  -- De-duplication is off (maybe turned off): its ids are not kept.
  redis.call('DEL', KEYS[6])
end
if n > 0 then
  redis.call('XADD', KEYS[1], '*', 'e', chunk, 'n', string.format('%d', n))
  depth = depth + n
  bytes = bytes + size
  redis.call('SET', KEYS[2], string.format('%d', depth))
  redis.call('SET', KEYS[4], string.format('%d', bytes))
  redis.call('HSET', KEYS[3], 'accepted', string.format('%d', num(counts[1]) + n))
end
if rejected > 0 then
  redis.call('HSET', KEYS[3], 'rejected', string.format('%d', num(counts[2]) + rejected))
end
if digest ~= '' then
  redis.call('HSET', KEYS[5], 'd', digest, 'n', string.format('%d', duplicates), 'a', ARGV[8])
  redis.call('PEXPIRE', KEYS[5], ARGV[9])
end
return {1, depth, bytes, duplicates, ''}
