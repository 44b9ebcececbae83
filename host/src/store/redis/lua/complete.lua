-- KEYS: queue, output, dlq, retry, depth, counters, clock.
-- ARGV: group, entry count, valid-below watermark ("" = no check), now,
-- window key prefix, pane TTL, then per entry: id, finished, #outputs,
-- #dead, #retries, the window operations (see `push_window_args`), the
-- outputs (when #outputs > 0: one JSON array of the events, appended as one
-- output stream entry), the dead (event JSON, stage JSON, meta JSON), the
-- retries (due, member).
-- Answers {applied, skipped}, or {-1, -1} when the stored watermark has
-- reached the valid-below one or the gate is held (then nothing was done).
local group = ARGV[1]
local count = tonumber(ARGV[2])
local now = tonumber(ARGV[4])
local wbase = ARGV[5]
local ttl = tonumber(ARGV[6])
local clock = redis.call('HMGET', KEYS[7], 'wm', 'gate')
-- No watermark yet reads as the smallest one (i64::MIN, as a double).
local wm = tonumber(clock[1] or '-9223372036854775808')
if ARGV[3] ~= '' then
  if wm >= tonumber(ARGV[3]) or (clock[2] and tonumber(clock[2]) > now) then
    return {-1, -1}
  end
end
local touched = {}
-- Applies one entry's window operations, read from ARGV from index j on
-- (see `push_window_args`); answers the entry's newest event time or nil.
local function apply_windows(j)
  local t = tonumber(ARGV[j])
  j = j + 1
  local nx = tonumber(ARGV[j])
  j = j + 1
  for _ = 1, nx do
    redis.call('SADD', wbase .. ARGV[j] .. ':dirty', ARGV[j + 1] .. '|' .. ARGV[j + 2])
    j = j + 3
  end
  local nb = tonumber(ARGV[j])
  j = j + 1
  for _ = 1, nb do
    local base = wbase .. ARGV[j] .. ':'
    local pane, dirty_at = ARGV[j + 1], ARGV[j + 2]
    local hk = base .. 'p:' .. pane
    if not touched[hk] then
      touched[hk] = true
      redis.call('ZADD', base .. 'panes', pane, pane)
      -- How many aggregates each row has (one window per pane hash).
      redis.call('HSET', hk, 'k|', ARGV[j + 3])
    end
    local ng = tonumber(ARGV[j + 4])
    j = j + 5
    if dirty_at ~= '' and wm >= tonumber(dirty_at) then
      for k = j, j + ng - 1 do
        redis.call('SADD', base .. 'dirty', pane .. '|' .. ARGV[k])
      end
    end
    j = j + ng
    local n = tonumber(ARGV[j])
    for k = j + 1, j + 2 * n, 2 do
      redis.call('HINCRBY', hk, ARGV[k], ARGV[k + 1])
    end
    j = j + 1 + 2 * n
    n = tonumber(ARGV[j])
    for k = j + 1, j + 2 * n, 2 do
      redis.call('HINCRBYFLOAT', hk, ARGV[k], ARGV[k + 1])
    end
    j = j + 1 + 2 * n
    n = tonumber(ARGV[j])
    for k = j + 1, j + 2 * n, 2 do
      local old = redis.call('HGET', hk, ARGV[k])
      if not old or tonumber(old) > tonumber(ARGV[k + 1]) then redis.call('HSET', hk, ARGV[k], ARGV[k + 1]) end
    end
    j = j + 1 + 2 * n
    n = tonumber(ARGV[j])
    for k = j + 1, j + 2 * n, 2 do
      local old = redis.call('HGET', hk, ARGV[k])
      if not old or tonumber(old) < tonumber(ARGV[k + 1]) then redis.call('HSET', hk, ARGV[k], ARGV[k + 1]) end
    end
    j = j + 1 + 2 * n
    n = tonumber(ARGV[j])
    j = j + 1
    for _ = 1, n do
      local suffix, nv = ARGV[j], tonumber(ARGV[j + 1])
      j = j + 2
      local key = base .. suffix
      for s = j, j + nv - 1, 4000 do
        redis.call('PFADD', key, unpack(ARGV, s, math.min(s + 3999, j + nv - 1)))
      end
      j = j + nv
      redis.call('PEXPIRE', key, ttl)
      -- 'h:<pane>:<i>:<group>' → the row's marker 'h|<i>|<group>'.
      local rest = string.sub(suffix, string.len(pane) + 4)
      local colon = string.find(rest, ':', 1, true)
      redis.call('HSET', hk, 'h|' .. string.sub(rest, 1, colon - 1) .. '|' .. string.sub(rest, colon + 1), 1)
    end
  end
  return t
end
local i = 7
local applied, skipped, finished, emitted = 0, 0, 0, 0
local maxts = nil
for _ = 1, count do
  local id = ARGV[i]
  local fin = tonumber(ARGV[i + 1])
  local nout = tonumber(ARGV[i + 2])
  local ndead = tonumber(ARGV[i + 3])
  local nretry = tonumber(ARGV[i + 4])
  local wstart, nw = i + 6, tonumber(ARGV[i + 5])
  i = i + 6 + nw
  local nouts = 0
  if nout > 0 then nouts = 1 end
  if redis.call('XACK', KEYS[1], group, id) == 1 then
    if nout > 0 then
      redis.call('XADD', KEYS[2], '*', 'n', nout, 'e', ARGV[i])
    end
    i = i + nouts
    for j = 0, ndead - 1 do
      local b = i + 3 * j
      redis.call('XADD', KEYS[3], '*', 'e', ARGV[b], 's', ARGV[b + 1], 'm', ARGV[b + 2])
    end
    i = i + 3 * ndead
    for j = 0, nretry - 1 do
      redis.call('ZADD', KEYS[4], ARGV[i + 2 * j], ARGV[i + 2 * j + 1])
    end
    i = i + 2 * nretry
    if nw > 0 then
      local t = apply_windows(wstart)
      if t and (maxts == nil or t > maxts) then maxts = t end
    end
    redis.call('XDEL', KEYS[1], id)
    finished = finished + fin
    emitted = emitted + nout
    applied = applied + 1
  else
    i = i + nouts + 3 * ndead + 2 * nretry
    skipped = skipped + 1
  end
end
if finished > 0 then
  if redis.call('DECRBY', KEYS[5], finished) < 0 then
    redis.call('SET', KEYS[5], 0)
  end
  redis.call('HINCRBY', KEYS[6], 'processed', finished)
end
if emitted > 0 then
  redis.call('HINCRBY', KEYS[6], 'emitted', emitted)
end
for hk, _ in pairs(touched) do
  redis.call('PEXPIRE', hk, ttl)
end
if maxts ~= nil then
  local old = redis.call('HGET', KEYS[7], 'maxts')
  if not old or tonumber(old) < maxts then
    redis.call('HSET', KEYS[7], 'maxts', string.format('%d', maxts))
  end
  redis.call('HSET', KEYS[7], 'last', ARGV[4])
end
return {applied, skipped}
