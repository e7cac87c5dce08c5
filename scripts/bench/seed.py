"""Seed the store with N care plans over N/10 patients through the REST API (PUT with known ids),
so the benchmark scenarios can address them as CarePlan/bench-0 .. bench-(N-1)."""

import http.client
import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from bodies import care_plan

HOST, PORT, COUNT = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
BASE = sys.argv[4] if len(sys.argv) > 4 else "/fhir"
WORKERS = 16


def worker(start: int) -> int:
    conn = http.client.HTTPConnection(HOST, PORT)
    failures = 0
    for n in range(start, COUNT, WORKERS):
        body = json.dumps(care_plan(n, with_id=True))
        conn.request("PUT", f"{BASE}/CarePlan/bench-{n}", body, {"Content-Type": "application/fhir+json", "Prefer": "return=minimal"})
        response = conn.getresponse()
        response.read()
        if response.status not in (200, 201):
            failures += 1
    return failures


started = time.monotonic()
with ThreadPoolExecutor(WORKERS) as pool:
    failed = sum(pool.map(worker, range(WORKERS)))
elapsed = time.monotonic() - started
if failed:
    sys.exit(f"seeding failed for {failed} care plans")
print(f"{elapsed:.1f}")
