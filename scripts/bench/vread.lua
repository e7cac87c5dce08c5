-- GET version 1 of a random seeded CarePlan.
local count = tonumber(os.getenv("SEEDED") or "10000")
function setup(thread) thread:set("seed", math.random(1, 1000000)) end
function init(args) math.randomseed(seed) end
function request()
  return wrk.format("GET", (os.getenv("BASE") or "/fhir") .. "/CarePlan/bench-" .. math.random(0, count - 1) .. "/_history/1")
end
