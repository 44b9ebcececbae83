-- KEYS: sinks (hash), output (stream), counters (hash). ARGV: sink, from, epoch
-- (a random token naming this record).
-- Answers the sink's record JSON, making it first if there is none: a sink
-- of the output starts at the output's current end with seq = `emitted`
-- (read in this same step, so lag = emitted - seq from here on); a sink of
-- a window's results at the start.
local existing = redis.call('HGET', KEYS[1], ARGV[1])
if existing then
  return existing
end
local cursor, seq = '', '0'
if ARGV[2] == 'output' then
  local last = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)
  if #last == 1 then
    cursor = last[1][1]
  end
  local emitted = redis.call('HGET', KEYS[3], 'emitted')
  if emitted and string.match(emitted, '^%d+$') then
    seq = emitted
  end
end
local record = '{"from":"' .. ARGV[2] .. '","epoch":"' .. ARGV[3] .. '","position":{"cursor":"' .. cursor .. '","seq":' .. seq .. '},"delivered":0,"failed":0}'
redis.call('HSET', KEYS[1], ARGV[1], record)
return record
