"""Seed a search benchmark store through transaction Bundles (the REST bulk path): for each of
PATIENTS patients, 10 CarePlans, 2 CareTeams and 50 Tasks with known ids, so the query scenarios
can address them. 10,000 patients gives 100,000 CarePlans, 20,000 CareTeams and 500,000 Tasks.

Usage: seed_search.py HOST PORT FROM TO: seeds patients FROM..TO-1 (so a store can be grown
in steps); prints the seconds seeding took."""

import http.client
import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor

HOST, PORT, FROM, TO = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
WORKERS = 8
PRACTITIONERS = 1000
CODES = [f"code-{n}" for n in range(20)]
CODE_SYSTEM = "http://careplan.example/task-code"
PLAN_STATUSES = ["active", "active", "active", "completed", "draft", "on-hold", "revoked", "active", "completed", "active"]
NEEDS_REASON = {"cancelled", "rejected", "on-hold", "failed"}
TASK_STATUSES = ["requested", "accepted", "in-progress", "completed", "requested", "cancelled", "on-hold",
                 "completed", "ready", "in-progress"]


def patient_bundle(p: int) -> dict:
    entries = []
    subject = {"reference": f"Patient/p{p}"}

    def put(resource: dict) -> None:
        entries.append({"resource": resource,
                        "request": {"method": "PUT", "url": f"{resource['resourceType']}/{resource['id']}"}})

    for t in range(2):
        put({"resourceType": "CareTeam", "id": f"ct-{p}-{t}", "status": "active", "subject": subject,
             "name": f"Team {t} of patient {p}",
             "participant": [{"member": {"reference": f"Practitioner/pr{(p + k) % PRACTITIONERS}"}} for k in range(3)]})
    for c in range(10):
        put({"resourceType": "CarePlan", "id": f"cp-{p}-{c}", "status": PLAN_STATUSES[c], "intent": "plan",
             "subject": subject, "careTeam": [{"reference": f"CareTeam/ct-{p}-{c % 2}"}],
             "title": f"Plan {c}", "period": {"start": f"2026-{(c % 12) + 1:02d}-01"},
             "category": [{"coding": [{"system": "http://snomed.info/sct", "code": "734163000"}]}]})
    for t in range(50):
        status = TASK_STATUSES[t % 10]
        # The Task workflow asks why a Task was cancelled, rejected, put on hold or failed.
        reason = {"statusReason": {"text": "bench"}} if status in NEEDS_REASON else {}
        put({**reason, "resourceType": "Task", "id": f"t-{p}-{t}", "status": status, "intent": "order",
             "for": subject, "basedOn": [{"reference": f"CarePlan/cp-{p}-{t % 10}"}],
             "owner": {"reference": f"Practitioner/pr{(p * 7 + t) % PRACTITIONERS}"},
             "requester": {"reference": f"Practitioner/pr{p % PRACTITIONERS}"},
             "code": {"coding": [{"system": CODE_SYSTEM, "code": CODES[(p + t) % len(CODES)]}]},
             "authoredOn": f"2026-{(t % 12) + 1:02d}-{(t % 28) + 1:02d}",
             "description": f"Task {t} for patient {p}"})
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def worker(start: int) -> int:
    conn = http.client.HTTPConnection(HOST, PORT, timeout=120)
    failures = 0
    for p in range(FROM + start, TO, WORKERS):
        conn.request("POST", "/fhir", json.dumps(patient_bundle(p)),
                     {"Content-Type": "application/fhir+json", "Prefer": "return=minimal"})
        response = conn.getresponse()
        body = response.read()
        if response.status != 200:
            failures += 1
            if failures == 1:
                print(f"patient {p}: {response.status} {body[:300]!r}", file=sys.stderr)
    return failures


started = time.monotonic()
with ThreadPoolExecutor(WORKERS) as pool:
    failed = sum(pool.map(worker, range(WORKERS)))
elapsed = time.monotonic() - started
if failed:
    sys.exit(f"seeding failed for {failed} patients")
print(f"{elapsed:.1f}")
