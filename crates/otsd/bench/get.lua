-- wrk script: GET /timestamp/<hex> of completed commitments, picked at
-- random from the paths file given after `--`, over keep-alive connections.
local counter = 0
local paths = {}

function setup(thread)
  counter = counter + 1
  thread:set("id", counter)
end

function init(args)
  math.randomseed(os.time() * 1000 + id)
  for line in io.lines(args[1]) do
    paths[#paths + 1] = line
  end
end

request = function()
  return wrk.format("GET", paths[math.random(#paths)])
end
