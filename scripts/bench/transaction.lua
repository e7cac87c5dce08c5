-- POST a transaction Bundle (BODY_FILE): a CareTeam, a CarePlan and five Tasks.
local base = os.getenv("BASE") or "/fhir"
local f = assert(io.open(os.getenv("BODY_FILE"), "r"))
local body = f:read("*a")
f:close()
wrk.method = "POST"
wrk.path = (base == "" and "/" or base)
wrk.body = body
wrk.headers["Content-Type"] = "application/fhir+json"
wrk.headers["Accept"] = "application/fhir+json"
