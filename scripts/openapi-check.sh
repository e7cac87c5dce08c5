#!/usr/bin/env bash
# The OpenAPI contract against a live server, in three steps:
#   1. lint openapi/openapi.yaml with openapi-spec-validator;
#   2. start `careplan serve` on a fresh SQLite file, check that it serves the same document as
#      /openapi.json, and fuzz it with schemathesis (phases examples, coverage, fuzzing), failing on any
#      5xx and on any answer the document does not describe (status, content type, headers, body);
#   3. load /docs in headless Chromium and check that Swagger UI rendered the operations.
# The Python tools live in a venv (OPENAPI_VENV, default target/openapi-venv), made on first use;
# Chromium comes from Debian's package. Called by .ci/run after `make test`; `make openapi-check`
# runs it alone. OPENAPI_SEED changes the schemathesis seed (fixed by default so CI is repeatable),
# OPENAPI_MAX_EXAMPLES the random examples per operation in the fuzzing phase (default 5; the
# coverage phase's boundary and negative cases, ~70,000 over 141 operations, do not depend on it and
# take most of the time), OPENAPI_TIMEOUT the seconds schemathesis may take (default 600).
set -euo pipefail
cd "$(dirname "$0")/.."

started=$SECONDS
step() { printf '== %s (%ds)\n' "$*" "$((SECONDS - started))"; }

# 0. Tools: the venv (reinstalled when the pinned versions change), Chromium and the binary.
requirements="openapi-spec-validator==0.9.0 schemathesis==4.32.5 hypothesis==6.170.15"
venv=${OPENAPI_VENV:-target/openapi-venv}
if [ "$(cat "$venv/.requirements" 2>/dev/null)" != "$requirements" ]; then
  step "installing $requirements into $venv"
  rm -rf "$venv"
  python3 -m venv "$venv"
  # shellcheck disable=SC2086 # one argument per requirement
  "$venv/bin/pip" install --quiet --disable-pip-version-check $requirements
  echo "$requirements" >"$venv/.requirements"
fi
if ! command -v chromium >/dev/null; then
  step "installing chromium"
  if [ "$(id -u)" != 0 ]; then
    echo "chromium is missing; install Debian's chromium package (apt-get install chromium)" >&2
    exit 1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
step "building careplan"
cargo build --quiet --bin careplan
bin="${CARGO_TARGET_DIR:-target}/debug/careplan"

# 1. Lint the checked-in document (the integration tests prove it is what the code generates).
step "openapi-spec-validator openapi/openapi.yaml"
"$venv/bin/openapi-spec-validator" openapi/openapi.yaml

# 2. A server of our own on a free port and a fresh database, stopped however this script ends.
tmp=$(mktemp -d)
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
root="http://127.0.0.1:$port"
CAREPLAN_AUTH_DISABLED=true CAREPLAN_DATABASE_URL="sqlite://$tmp/s.db" CAREPLAN_ADDR="127.0.0.1:$port" CAREPLAN_WORKERS=2 \
  CAREPLAN_LOG="${CAREPLAN_LOG:-warn}" CAREPLAN_LOG_FORMAT=text "$bin" serve >"$tmp/server.log" 2>&1 &
server=$!
cleanup() {
  kill "$server" 2>/dev/null || true
  wait "$server" 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT
for _ in $(seq 1 100); do
  curl -sf "$root/readyz" >/dev/null && break
  kill -0 "$server" 2>/dev/null || { cat "$tmp/server.log" >&2; echo "careplan serve exited" >&2; exit 1; }
  sleep 0.1
done
curl -sf "$root/readyz" >/dev/null || { cat "$tmp/server.log" >&2; echo "careplan is not ready" >&2; exit 1; }

# A YAML 1.1 reader (PyYAML) reads the file as the same document the server serves as JSON.
"$venv/bin/python" - "$root/openapi.json" <<'PY'
import json, sys, urllib.request
import yaml
with open("openapi/openapi.yaml") as f:
    from_file = yaml.safe_load(f)
with urllib.request.urlopen(sys.argv[1]) as r:
    served = json.load(r)
if from_file != served:
    sys.exit("openapi/openapi.yaml read with PyYAML differs from /openapi.json")
PY

step "schemathesis against $root"
seed=${OPENAPI_SEED:-20261124}
set +e
# scripts/openapi_hooks.py accepts the one answer OpenAPI 3.0 cannot describe (return=minimal).
PYTHONPATH=scripts SCHEMATHESIS_HOOKS=openapi_hooks \
  timeout "${OPENAPI_TIMEOUT:-600}" "$venv/bin/schemathesis" run openapi/openapi.yaml \
  --url "$root" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance \
  --phases examples,coverage,fuzzing \
  --max-examples "${OPENAPI_MAX_EXAMPLES:-5}" \
  --seed "$seed" \
  --workers 2 \
  --request-timeout 10 \
  --generation-database none \
  --no-color
status=$?
set -e
if [ "$status" != 0 ]; then
  [ "$status" = 124 ] && echo "schemathesis ran out of time" >&2
  echo "schemathesis failed (seed $seed); server log:" >&2
  tail -50 "$tmp/server.log" >&2
  exit 1
fi
kill -0 "$server" 2>/dev/null || { echo "careplan serve died during the fuzzing" >&2; exit 1; }

# 3. Swagger UI renders from the files the binary ships: every tag (collapsed, `docExpansion:
# none`: the document has too many operations to render all at once), and the operations of
# the Task tag once it is opened by its deep link.
step "headless chromium $root/docs"
timeout 90 chromium --headless --no-sandbox --disable-gpu --disable-dev-shm-usage --no-first-run \
  --user-data-dir="$tmp/chromium" --virtual-time-budget=10000 --dump-dom "$root/docs/index.html#/Task" \
  >"$tmp/docs.html" 2>"$tmp/chromium.log" || { cat "$tmp/chromium.log" >&2; exit 1; }
curl -sf "$root/openapi.json" >"$tmp/openapi.json"
read -r tags task_operations operations < <(python3 -c '
import json, sys
document = json.load(open(sys.argv[1]))
ops = [op for item in document["paths"].values() for op in item.values() if isinstance(op, dict) and "operationId" in op]
print(len({t for op in ops for t in op.get("tags", [])}), sum("Task" in op.get("tags", []) for op in ops), len(ops))
' "$tmp/openapi.json")
sections=$(grep -o 'class="opblock-tag-section' "$tmp/docs.html" | wc -l || true)
blocks=$(grep -o 'class="opblock opblock-' "$tmp/docs.html" | wc -l || true)
if [ "$sections" != "$tags" ] || [ "$blocks" != "$task_operations" ] || ! grep -q 'data-path="/fhir/Task/{id}"' "$tmp/docs.html"; then
  echo "Swagger UI rendered $sections tags of $tags and $blocks Task operations of $task_operations (DOM in $tmp/docs.html):" >&2
  head -c 2000 "$tmp/docs.html" >&2
  trap - EXIT
  kill "$server" 2>/dev/null || true
  exit 1
fi
step "openapi-check passed: $operations operations fuzzed and rendered"
