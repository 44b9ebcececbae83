-- KEYS: queue, output, dlq, retry, depth, counters, clock, bytes.
-- ARGV: group, entry count, valid-below watermark ("" = no check), now,
-- window key prefix, pane TTL, then per entry: id, finished, entry bytes,
-- retry bytes, #outputs, #dead, #retries, #window items, the window
-- operations (see `push_window_args`), the outputs (when #outputs > 0: one
-- JSON array of the events, appended as one output stream entry), the dead
-- (event JSON, stage JSON, meta JSON), the retries (due, member).
-- Answers {applied, skipped}, or {-1, -1} when the stored watermark has
-- reached the valid-below one or the gate is held (then nothing was done),
-- or an error when a sum would stop being a finite number (then nothing was
-- written either).
--
-- Two phases, so the script can never stop half-way (Redis keeps what a
-- failed script wrote): the first only reads (which entries are pending,
-- the stored sums, minima and maxima the applied entries change) and
-- computes their new values, refusing the whole call if one is not a finite
-- number; the second writes with commands that cannot fail (computed
-- values SET or HSET, counts by HINCRBY with an HSET fallback, XADD, ZADD,
-- SADD, PFADD on sketches checked first).
-- A stored value that is not a finite number reads as missing.
local group = ARGV[1]
local count = tonumber(ARGV[2])
local now = tonumber(ARGV[4])
local wbase = ARGV[5]
local ttl = tonumber(ARGV[6])
-- A dense HyperLogLog's size (what `PFADD` insists on).
local HLL_DENSE = 12304

local function finite(x)
  return x == x and x ~= math.huge and x ~= -math.huge
end
local function stored(v)
  local x = tonumber(v)
  if x ~= nil and finite(x) then return x end
  return nil
end
local function int(x)
  return string.format('%d', x)
end

-- ---- phase 1: read, compute, check --------------------------------------
local clock = redis.call('HMGET', KEYS[7], 'wm', 'gate')
-- No watermark yet reads as the smallest one (i64::MIN, as a double).
local wm = stored(clock[1]) or -9223372036854775808
if ARGV[3] ~= '' then
  if wm >= tonumber(ARGV[3]) or (stored(clock[2]) or 0) > now then
    return {-1, -1}
  end
end

local entries = {}
local i = 7
for e = 1, count do
  local ent = {
    id = ARGV[i], fin = tonumber(ARGV[i + 1]), eb = tonumber(ARGV[i + 2]), rb = tonumber(ARGV[i + 3]),
    nout = tonumber(ARGV[i + 4]), ndead = tonumber(ARGV[i + 5]), nretry = tonumber(ARGV[i + 6]),
  }
  local nw = tonumber(ARGV[i + 7])
  ent.wstart, ent.nw = i + 8, nw
  i = i + 8 + nw
  ent.body = i
  if ent.nout > 0 then i = i + 1 end
  i = i + 3 * ent.ndead + 2 * ent.nretry
  local p = redis.pcall('XPENDING', KEYS[1], group, ent.id, ent.id, 1)
  ent.pending = type(p) == 'table' and p.err == nil and #p == 1
  entries[e] = ent
end

-- Window operations of the pending entries, gathered per pane hash.
local hashes, hlist = {}, {}
local sadds = {}
local sketches = {}
local maxts = nil
local function gather(j)
  local t = tonumber(ARGV[j])
  j = j + 1
  local nx = tonumber(ARGV[j])
  j = j + 1
  for _ = 1, nx do
    sadds[#sadds + 1] = {wbase .. ARGV[j] .. ':dirty', ARGV[j + 1] .. '|' .. ARGV[j + 2]}
    j = j + 3
  end
  local nb = tonumber(ARGV[j])
  j = j + 1
  for _ = 1, nb do
    local base = wbase .. ARGV[j] .. ':'
    local pane, dirty_at = ARGV[j + 1], ARGV[j + 2]
    local hk = base .. 'p:' .. pane
    local h = hashes[hk]
    if not h then
      h = {base = base, pane = pane, k = ARGV[j + 3], ranges = {}}
      hashes[hk] = h
      hlist[#hlist + 1] = hk
    end
    local ng = tonumber(ARGV[j + 4])
    j = j + 5
    if dirty_at ~= '' and wm >= tonumber(dirty_at) then
      for k = j, j + ng - 1 do
        sadds[#sadds + 1] = {base .. 'dirty', pane .. '|' .. ARGV[k]}
      end
    end
    j = j + ng
    -- Where this block's ints, integer sums, float sums, minima and maxima
    -- are in ARGV: {first field index, count} each.
    local r = {}
    for q = 1, 5 do
      local n = tonumber(ARGV[j])
      r[2 * q - 1], r[2 * q] = j + 1, n
      j = j + 1 + 2 * n
    end
    h.ranges[#h.ranges + 1] = r
    local n = tonumber(ARGV[j])
    j = j + 1
    for _ = 1, n do
      local suffix, nv = ARGV[j], tonumber(ARGV[j + 1])
      -- 'h:<pane>:<i>:<group>' → the row's marker 'h|<i>|<group>'.
      local rest = string.sub(suffix, string.len(pane) + 4)
      local colon = string.find(rest, ':', 1, true) or 1
      sketches[#sketches + 1] = {
        key = base .. suffix, from = j + 2, to = j + 1 + nv, hk = hk,
        marker = 'h|' .. string.sub(rest, 1, colon - 1) .. '|' .. string.sub(rest, colon + 1),
      }
      j = j + 2 + nv
    end
  end
  return t
end
local finished, emitted, dbytes = 0, 0, 0
for _, ent in ipairs(entries) do
  if ent.pending then
    if ent.nw > 0 then
      local t = gather(ent.wstart)
      if t and (maxts == nil or t > maxts) then maxts = t end
    end
    finished = finished + ent.fin
    emitted = emitted + ent.nout
    dbytes = dbytes - ent.eb + ent.rb
  end
end

-- Every pane field's new value, from what is stored. `text[name]` is what
-- to write: INT or FLOAT (format `new[name]`), or the given text (minima
-- and maxima keep the caller's).
local INT, FLOAT = 1, 2
for _, hk in ipairs(hlist) do
  local h = hashes[hk]
  -- Counts and integer sums are added in phase 2 by `HINCRBY`, whose
  -- failures are handled there (see below), so only float sums, minima and
  -- maxima are read.
  local names = {}
  for _, r in ipairs(h.ranges) do
    for q = 3, 5 do
      local first, n = r[2 * q - 1], r[2 * q]
      for k = first, first + 2 * n - 2, 2 do names[#names + 1] = ARGV[k] end
    end
  end
  local vals = {}
  for s = 1, #names, 4000 do
    local got = redis.call('HMGET', hk, unpack(names, s, math.min(s + 3999, #names)))
    for n = 1, #got do vals[names[s + n - 1]] = got[n] end
  end
  local new, text = {}, {}
  local function add(name, v)
    local c = new[name]
    if c == nil then c = stored(vals[name]) or 0 end
    new[name] = c + v
  end
  for _, r in ipairs(h.ranges) do
    for k = r[5], r[5] + 2 * r[6] - 2, 2 do
      add(ARGV[k], tonumber(ARGV[k + 1]))
      text[ARGV[k]] = FLOAT
    end
    for q = 7, 9, 2 do
      for k = r[q], r[q] + 2 * r[q + 1] - 2, 2 do
        local name, v = ARGV[k], tonumber(ARGV[k + 1])
        local c = new[name]
        if c == nil then c = stored(vals[name]) end
        if c == nil or (q == 7 and c > v) or (q == 9 and c < v) then
          new[name] = v
          text[name] = ARGV[k + 1]
        end
      end
    end
  end
  h.pairs, h.dels = {}, {}
  for name, t in pairs(text) do
    if t == INT then
      t = string.format('%d', new[name])
    elseif t == FLOAT then
      if not finite(new[name]) then
        return redis.error_reply('ERR refused, nothing written: the sum ' .. name .. ' of pane ' .. hk
          .. ' would not be a finite number')
      end
      t = string.format('%.17g', new[name])
    end
    h.pairs[#h.pairs + 1] = name
    h.pairs[#h.pairs + 1] = t
  end
  for name, v in pairs(vals) do
    -- Stored, not a number, and not rewritten: read as missing, so gone.
    if v and not text[name] and stored(v) == nil then
      h.dels[#h.dels + 1] = name
    end
  end
end

-- A sketch `PFADD` would refuse (not a HyperLogLog) is replaced.
local checked = {}
for _, s in ipairs(sketches) do
  -- Checked (and so replaced) once per key, before anything is added to it.
  if not checked[s.key] then
    checked[s.key] = true
    local kind = redis.call('TYPE', s.key)
    kind = kind.ok or kind
    if kind ~= 'none' then
      local head = kind == 'string' and redis.call('GETRANGE', s.key, 0, 4) or ''
      local dense = string.byte(head, 5)
      s.reset = string.sub(head, 1, 4) ~= 'HYLL' or dense == nil or dense > 1
        or (dense == 0 and redis.call('STRLEN', s.key) ~= HLL_DENSE)
    end
  end
end

local depth = stored(redis.call('GET', KEYS[5])) or 0
local bytes = stored(redis.call('GET', KEYS[8])) or 0
local counts = redis.call('HMGET', KEYS[6], 'processed', 'emitted')
local clockmax = maxts and stored(redis.call('HGET', KEYS[7], 'maxts'))

-- ---- phase 2: write (nothing below can fail) -----------------------------
-- A window apply that finds a closer's lease run out (the gate set but past)
-- revokes it: that pass read panes this apply may change, so its commit must
-- be fenced (a new token), and the gate opens.
if ARGV[3] ~= '' and (stored(clock[2]) or 0) > 0 then
  redis.call('HINCRBY', KEYS[7], 'tok', 1)
  redis.call('HSET', KEYS[7], 'gate', '0')
end
local applied, skipped = 0, 0
for _, ent in ipairs(entries) do
  if ent.pending then
    redis.call('XACK', KEYS[1], group, ent.id)
    local b = ent.body
    if ent.nout > 0 then
      redis.call('XADD', KEYS[2], '*', 'n', ent.nout, 'e', ARGV[b])
      b = b + 1
    end
    for j = 0, ent.ndead - 1 do
      local d = b + 3 * j
      redis.call('XADD', KEYS[3], '*', 'e', ARGV[d], 's', ARGV[d + 1], 'm', ARGV[d + 2])
    end
    b = b + 3 * ent.ndead
    for j = 0, ent.nretry - 1 do
      redis.call('ZADD', KEYS[4], ARGV[b + 2 * j], ARGV[b + 2 * j + 1])
    end
    redis.call('XDEL', KEYS[1], ent.id)
    applied = applied + 1
  else
    skipped = skipped + 1
  end
end
for _, s in ipairs(sadds) do
  redis.call('SADD', s[1], s[2])
end
for _, hk in ipairs(hlist) do
  local h = hashes[hk]
  redis.call('ZADD', h.base .. 'panes', h.pane, h.pane)
  -- How many aggregates each row has (one window per pane hash).
  redis.call('HSET', hk, 'k|', h.k)
  for s = 1, #h.pairs, 4000 do
    redis.call('HSET', hk, unpack(h.pairs, s, math.min(s + 3999, #h.pairs)))
  end
  for _, r in ipairs(h.ranges) do
    for k = r[1], r[1] + 2 * r[2] - 2, 2 do
      local done = redis.pcall('HINCRBY', hk, ARGV[k], ARGV[k + 1])
      if type(done) == 'table' and done.err then
        -- A stored non-number reads as missing: the count starts again here.
        redis.call('HSET', hk, ARGV[k], ARGV[k + 1])
      end
    end
    -- Integer sums: exact in `HINCRBY` up to i64; one that would overflow
    -- it (or a stored non-integer) goes on in the float part instead, and
    -- a float part that would stop being finite takes nothing (nothing
    -- here can stop the script).
    for k = r[3], r[3] + 2 * r[4] - 2, 2 do
      local done = redis.pcall('HINCRBY', hk, ARGV[k], ARGV[k + 1])
      if type(done) == 'table' and done.err then
        local float = 's' .. string.sub(ARGV[k], 3)
        local moved = redis.pcall('HINCRBYFLOAT', hk, float, ARGV[k + 1])
        if type(moved) == 'table' and moved.err and stored(redis.call('HGET', hk, float)) == nil then
          redis.call('HSET', hk, float, ARGV[k + 1])
        end
      end
    end
  end
  for s = 1, #h.dels, 4000 do
    redis.call('HDEL', hk, unpack(h.dels, s, math.min(s + 3999, #h.dels)))
  end
end
for _, s in ipairs(sketches) do
  if s.reset then redis.call('UNLINK', s.key) end
  for k = s.from, s.to, 4000 do
    redis.call('PFADD', s.key, unpack(ARGV, k, math.min(k + 3999, s.to)))
  end
  redis.call('PEXPIRE', s.key, ttl)
  redis.call('HSET', s.hk, s.marker, 1)
end
for _, hk in ipairs(hlist) do
  redis.call('PEXPIRE', hk, ttl)
end
if applied > 0 then
  redis.call('SET', KEYS[5], int(math.max(0, depth - finished)))
  redis.call('SET', KEYS[8], int(math.max(0, bytes + dbytes)))
  if finished > 0 then
    redis.call('HSET', KEYS[6], 'processed', int((stored(counts[1]) or 0) + finished))
  end
  if emitted > 0 then
    redis.call('HSET', KEYS[6], 'emitted', int((stored(counts[2]) or 0) + emitted))
  end
end
if maxts ~= nil then
  if clockmax == nil or clockmax < maxts then
    redis.call('HSET', KEYS[7], 'maxts', string.format('%d', maxts))
  end
  redis.call('HSET', KEYS[7], 'last', ARGV[4])
end
return {applied, skipped}
