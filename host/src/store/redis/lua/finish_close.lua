-- KEYS: clock. ARGV: window key prefix, commit JSON (see `commit_close`),
-- the lease's fencing token. Answers 1 when applied, 0 (nothing written)
-- when that lease is not the live one: the stored token is another (the
-- lease ran out and was taken again, or an apply revoked it), or the gate
-- is open (this lease committed already), so this pass's decisions are void.
-- The checks and the only step that can fail (decoding the commit) come
-- before any write; every command after works on any stored value (a
-- HyperLogLog marker without its index is skipped), so the script never
-- stops half-way.
local lease = redis.call('HMGET', KEYS[1], 'tok', 'gate')
if lease[1] ~= ARGV[3] or not lease[2] or lease[2] == '0' then
  return 0
end
local wbase = ARGV[1]
local c = cjson.decode(ARGV[2])
-- The watermark never moves backwards, except that one stored past the
-- horizon (the clock plus `max_future_ms`) is brought down to it. Compared
-- as numbers, written as the exact decimal text given or stored.
-- (A stored value that is not a number is replaced; no horizon is null.)
local stored_wm = redis.call('HGET', KEYS[1], 'wm')
local sw, cw, h = tonumber(stored_wm), tonumber(c.wm), tonumber(c.horizon)
local new_wm = c.wm
if sw and cw and cw < sw then
  if h and sw > h then
    if cw < h then new_wm = c.horizon end
  else
    new_wm = stored_wm
  end
end
for _, r in ipairs(c.emit) do
  local id = redis.call('XADD', wbase .. r[1] .. ':results', '*', 's', r[2], 'g', r[3], 'j', r[4])
  redis.call('ZADD', wbase .. r[1] .. ':resultsidx', r[2], id)
end
for _, r in ipairs(c.finals) do
  local base = wbase .. r[1] .. ':'
  local member = r[2] .. '|' .. r[3]
  redis.call('ZADD', base .. 'final', r[2], member)
  redis.call('HSET', base .. 'finalh', member, r[4])
end
local function drop_group(base, pane, g)
  local hk = base .. 'p:' .. pane
  redis.call('HDEL', hk, 'c|' .. g)
  for i = 0, 15 do
    local suffix = '|' .. i .. '|' .. g
    redis.call('HDEL', hk, 'n' .. suffix, 's' .. suffix, 'si' .. suffix, 'mn' .. suffix, 'mx' .. suffix, 'm' .. suffix)
    if redis.call('HDEL', hk, 'h' .. suffix) == 1 then
      redis.call('UNLINK', base .. 'h:' .. pane .. ':' .. i .. ':' .. g)
    end
  end
  local left = redis.call('HLEN', hk)
  if left == 0 or (left == 1 and redis.call('HEXISTS', hk, 'k|') == 1) then
    redis.call('UNLINK', hk)
    redis.call('ZREM', base .. 'panes', pane)
  end
end
for _, p in ipairs(c.drop) do
  local base = wbase .. p[1] .. ':'
  local pane = p[2]
  if p[3] == cjson.null or p[3] == nil then
    local hk = base .. 'p:' .. pane
    local fields = redis.call('HKEYS', hk)
    for _, f in ipairs(fields) do
      if string.sub(f, 1, 2) == 'h|' then
        local rest = string.sub(f, 3)
        local bar = string.find(rest, '|', 1, true)
        if bar then
          redis.call('UNLINK', base .. 'h:' .. pane .. ':' .. string.sub(rest, 1, bar - 1) .. ':' .. string.sub(rest, bar + 1))
        end
      end
    end
    redis.call('UNLINK', hk)
    redis.call('ZREM', base .. 'panes', pane)
  else
    drop_group(base, pane, p[3])
  end
end
for _, d in ipairs(c.dirty) do
  redis.call('SREM', wbase .. d[1] .. ':dirty', d[2])
end
for _, e in ipairs(c.expire) do
  local base = wbase .. e[1] .. ':'
  local old = redis.call('ZRANGEBYSCORE', base .. 'final', '-inf', '(' .. e[2])
  for s = 1, #old, 1000 do
    redis.call('HDEL', base .. 'finalh', unpack(old, s, math.min(s + 999, #old)))
  end
  redis.call('ZREMRANGEBYSCORE', base .. 'final', '-inf', '(' .. e[2])
  local ids = redis.call('ZRANGEBYSCORE', base .. 'resultsidx', '-inf', '(' .. e[2])
  for s = 1, #ids, 1000 do
    redis.call('XDEL', base .. 'results', unpack(ids, s, math.min(s + 999, #ids)))
  end
  redis.call('ZREMRANGEBYSCORE', base .. 'resultsidx', '-inf', '(' .. e[2])
end
redis.call('HSET', KEYS[1], 'wm', new_wm, 'gate', '0')
return 1
