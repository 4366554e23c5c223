-- wrk script: POST /digest with a fresh random 32-byte body per request,
-- over wrk's keep-alive connections.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/octet-stream"
wrk.headers["Accept"] = "application/vnd.opentimestamps.v1"

local counter = 0

function setup(thread)
  counter = counter + 1
  thread:set("id", counter)
end

function init(args)
  math.randomseed(os.time() * 1000 + id)
end

request = function()
  local b = {}
  for i = 1, 32 do
    b[i] = string.char(math.random(0, 255))
  end
  return wrk.format(nil, "/digest", nil, table.concat(b))
end

-- Latency percentiles to 0.1 ms (wrk's own summary rounds to 10 ms at 1 s).
function done(summary, latency, requests)
  for _, p in ipairs({50, 90, 99, 99.9}) do
    io.write(string.format("p%g=%.1fms ", p, latency:percentile(p) / 1000))
  end
  io.write(string.format("max=%.1fms\n", latency.max / 1000))
end
