"""Time one full bulk export (FHIR Bulk Data, `GET /fhir/$export`): kick it off, poll its status
until the manifest is served, download every NDJSON file and count the lines.

Usage: export.py HOST PORT: prints `seconds resources files` (seconds from the kick-off to the
last byte of the last file)."""

import http.client
import json
import sys
import time
from urllib.parse import urlsplit

HOST, PORT = sys.argv[1], int(sys.argv[2])


def request(conn, method, path, headers=None):
    conn.request(method, path, headers=headers or {})
    response = conn.getresponse()
    return response, response.read()


conn = http.client.HTTPConnection(HOST, PORT)
started = time.monotonic()
response, _ = request(conn, "GET", "/fhir/$export", {"Prefer": "respond-async", "Accept": "application/fhir+json"})
if response.status != 202:
    sys.exit(f"kick-off answered {response.status}")
status = urlsplit(response.getheader("Content-Location")).path
while True:
    response, body = request(conn, "GET", status)
    if response.status == 200:
        manifest = json.loads(body)
        break
    if response.status != 202:
        sys.exit(f"status answered {response.status}: {body[:300]!r}")
    time.sleep(0.05)
lines = 0
for output in manifest["output"]:
    conn.request("GET", urlsplit(output["url"]).path)
    response = conn.getresponse()
    if response.status != 200:
        sys.exit(f"file answered {response.status}")
    # Streamed: read in blocks, count lines, keep nothing.
    while block := response.read(1 << 20):
        lines += block.count(b"\n")
    if lines == 0:
        sys.exit("empty file")
elapsed = time.monotonic() - started
expected = sum(o["count"] for o in manifest["output"])
if lines != expected:
    sys.exit(f"{lines} lines downloaded, the manifest counts {expected}")
print(f"{elapsed:.2f} {lines} {len(manifest['output'])}")
