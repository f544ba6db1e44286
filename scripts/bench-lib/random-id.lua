-- wrk script: GET PREFIX..N with N uniform in 1..MAX, a fresh id per request,
-- so lookups hit the whole table, not one cached row.
-- Usage: wrk -s scripts/bench-lib/random-id.lua URL -- PREFIX MAX
local prefix
local max

function init(args)
  prefix = args[1]
  max = tonumber(args[2])
  if prefix == nil or max == nil or max < 1 then
    error("usage: wrk -s random-id.lua URL -- PREFIX MAX")
  end
  math.randomseed(os.time() + math.floor(os.clock() * 1000000))
end

function request()
  return wrk.format("GET", prefix .. math.random(1, max))
end
