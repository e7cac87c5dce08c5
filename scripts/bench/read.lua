-- GET a random seeded CarePlan by id.
local count = tonumber(os.getenv("SEEDED") or "10000")
function setup(thread) thread:set("seed", math.random(1, 1000000)) end
function init(args) math.randomseed(seed) end
-- With TOKEN set, every request carries it as a bearer token.
local token = os.getenv("TOKEN")
local headers = {}
if token and token ~= "" then headers["Authorization"] = "Bearer " .. token end
function request()
  return wrk.format("GET", (os.getenv("BASE") or "/fhir") .. "/CarePlan/bench-" .. math.random(0, count - 1), headers)
end
