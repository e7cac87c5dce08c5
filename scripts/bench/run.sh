#!/usr/bin/env bash
# `make bench`: a repeatable load benchmark of the release build with wrk on loopback.
# For each backend (SQLite always; PostgreSQL when reachable): start the server on a fresh
# database, time start-up to the first answer, seed 10,000 care plans over 1,000 patients, then
# run read, vread, create and update for DURATION seconds at CONNECTIONS connections, printing
# requests/s, p50/p99 latency and the server's peak RSS during each scenario.
set -euo pipefail
cd "$(dirname "$0")/../.."
HERE=scripts/bench
DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-16}
THREADS=${THREADS:-2}
SEEDED=${SEEDED:-10000}
PORT=${PORT:-18181}
PG_URL=${PG_URL:-postgres://postgres@127.0.0.1:5432}
BACKENDS=${BACKENDS:-sqlite postgres}
export SEEDED

if ! command -v wrk >/dev/null; then
  echo "installing wrk (Debian package)" >&2
  (apt-get update -qq && apt-get install -y -qq wrk) >/dev/null
fi
cargo build --release --bin careplan >&2
BIN=target/release/careplan
WORK=$(mktemp -d)
SERVER_PID=
cleanup() { [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null; wait 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT

python3 -c "import sys; sys.path.insert(0, '$HERE'); import json, bodies; print(json.dumps(bodies.care_plan(7, with_id=False)))" > "$WORK/create.json"
python3 -c "import sys; sys.path.insert(0, '$HERE'); import json, bodies; print(json.dumps(bodies.care_plan(0, with_id=True)).replace('bench-0', 'bench-ID'))" > "$WORK/update.json"

now_ms() { date +%s%3N; }

start_server() { # $1 = database URL
  local started; started=$(now_ms)
  CAREPLAN_LOG=warn CAREPLAN_ADDR=127.0.0.1:$PORT CAREPLAN_DATABASE_URL="$1" "$BIN" serve >"$WORK/server.log" 2>&1 &
  SERVER_PID=$!
  until curl -sf -o /dev/null "http://127.0.0.1:$PORT/fhir/metadata"; do
    kill -0 "$SERVER_PID" 2>/dev/null || { cat "$WORK/server.log" >&2; exit 1; }
    sleep 0.005
  done
  STARTUP_MS=$(( $(now_ms) - started ))
}

stop_server() { kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true; SERVER_PID=; }

peak_rss_mib() { awk '/VmHWM/ { printf "%.1f", $2 / 1024 }' "/proc/$SERVER_PID/status"; }

scenario() { # $1 = backend, $2 = name, $3 = lua script, $4 = body file (optional)
  echo 5 > "/proc/$SERVER_PID/clear_refs" 2>/dev/null || true
  BODY_FILE=${4:-} wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --latency -s "$HERE/$3" "http://127.0.0.1:$PORT" > "$WORK/wrk.txt"
  local rps p50 p99 errors
  rps=$(awk '/^Requests\/sec/ { printf "%d", $2 }' "$WORK/wrk.txt")
  p50=$(awk '$1 == "50%" { print $2 }' "$WORK/wrk.txt")
  p99=$(awk '$1 == "99%" { print $2 }' "$WORK/wrk.txt")
  errors=$(awk '/Non-2xx/ { print $5 } /Socket errors/ { print "socket" }' "$WORK/wrk.txt" | paste -sd' ')
  printf "| %-10s | %-7s | %9s | %8s | %8s | %8s | %s |\n" "$1" "$2" "$rps" "$p50" "$p99" "$(peak_rss_mib)" "${errors:-0}"
}

run_backend() { # $1 = backend name, $2 = database URL
  start_server "$2"
  local seconds; seconds=$(python3 "$HERE/seed.py" 127.0.0.1 "$PORT" "$SEEDED")
  echo "$1: start-up to first answer ${STARTUP_MS} ms; seeded $SEEDED care plans in ${seconds} s" >&2
  scenario "$1" read read.lua
  scenario "$1" vread vread.lua
  scenario "$1" create create.lua "$WORK/create.json"
  scenario "$1" update update.lua "$WORK/update.json"
  stop_server
}

echo "careplan $($BIN --version | awk '{print $2}') on $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo); wrk -t$THREADS -c$CONNECTIONS -d${DURATION}s, $SEEDED care plans over $((SEEDED / 10)) patients"
echo
echo "| backend    | scenario | req/s     | p50      | p99      | peak MiB | non-2xx |"
echo "|------------|----------|-----------|----------|----------|----------|---------|"
if [[ " $BACKENDS " == *" sqlite "* ]]; then
  run_backend sqlite "sqlite://$WORK/bench.db"
fi
if [[ " $BACKENDS " != *" postgres "* ]]; then
  :
elif pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
  psql "$PG_URL/postgres" -qc "DROP DATABASE IF EXISTS careplan_bench" -c "CREATE DATABASE careplan_bench" >/dev/null
  run_backend postgres "$PG_URL/careplan_bench"
else
  echo "PostgreSQL not reachable at 127.0.0.1:5432: skipped" >&2
fi
