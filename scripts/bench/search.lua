-- Search a random seeded patient's CarePlans (10 each): CarePlan?patient=Patient/p-N.
local base = os.getenv("BASE") or "/fhir"
function setup(thread) thread:set("seed", math.random(1, 1000000)) end
function init(args) math.randomseed(seed) end
function request()
  return wrk.format("GET", base .. "/CarePlan?patient=Patient/p-" .. math.random(0, 999),
    { ["Accept"] = "application/fhir+json" })
end
