-- One search scenario: QUERY (env) names it; each request picks a random patient, owner or code.
local patients = tonumber(os.getenv("PATIENTS") or "1000")
local practitioners = 1000
local query = os.getenv("QUERY") or "plans"
local paths = {
  plans = function(p, pr, c) return "/fhir/CarePlan?patient=Patient/p" .. p end,
  active = function(p, pr, c) return "/fhir/CarePlan?patient=Patient/p" .. p .. "&status=active" end,
  owner = function(p, pr, c)
    return "/fhir/Task?owner=Practitioner/pr" .. pr .. "&status=requested,accepted,in-progress&_sort=-_lastUpdated"
  end,
  code = function(p, pr, c)
    return "/fhir/Task?patient=Patient/p" .. p .. "&code=http://careplan.example/task-code%7Ccode-" .. c
  end,
  view = function(p, pr, c)
    return "/fhir/CarePlan?patient=Patient/p" .. p .. "&_include=CarePlan:care-team&_revinclude=Task:based-on"
  end,
}
local path = paths[query]
math.randomseed(os.time())
request = function()
  local p = math.random(0, patients - 1)
  local pr = math.random(0, practitioners - 1)
  local c = math.random(0, 19)
  return wrk.format("GET", path(p, pr, c), { ["Accept"] = "application/fhir+json" })
end
