-- POST a new CarePlan (the body is read from BODY_FILE).
local f = assert(io.open(os.getenv("BODY_FILE"), "r"))
local body = f:read("*a")
f:close()
wrk.method = "POST"
wrk.path = (os.getenv("BASE") or "/fhir") .. "/CarePlan"
wrk.body = body
wrk.headers["Content-Type"] = "application/fhir+json"
wrk.headers["Prefer"] = "return=minimal"
