-- PUT a new version of a random seeded CarePlan (BODY_FILE holds the body with id "bench-ID").
local count = tonumber(os.getenv("SEEDED") or "10000")
local f = assert(io.open(os.getenv("BODY_FILE"), "r"))
local template = f:read("*a")
f:close()
function setup(thread) thread:set("seed", math.random(1, 1000000)) end
function init(args) math.randomseed(seed) end
function request()
  local id = "bench-" .. math.random(0, count - 1)
  local body = string.gsub(template, "bench%-ID", id)
  return wrk.format("PUT", (os.getenv("BASE") or "/fhir") .. "/CarePlan/" .. id,
    { ["Content-Type"] = "application/fhir+json", ["Prefer"] = "return=minimal" }, body)
end
