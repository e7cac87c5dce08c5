#!/usr/bin/env bash
# `make bench`: a repeatable load benchmark of the release build with wrk on loopback.
# For each backend (SQLite always; PostgreSQL when reachable): start the server on a fresh
# database, time start-up to the first answer, seed 10,000 care plans over 1,000 patients, then
# run read, vread, create, update, search (CarePlan?patient=) and a 7-entry transaction for
# DURATION seconds at each of CONNS connections, printing requests/s, p50/p99 latency and the
# server's peak RSS during each scenario (plus PostgreSQL's processes, summed, on PostgreSQL).
# PEER=http://host:port/base runs the same scenarios against another FHIR server in the same run
# (PEER_PID: its process, for its RSS) and prints our throughput as a ratio of the peer's.
# KEEP_LOG=path keeps the last server's log there.
# The export stage seeds EXPORT_PATIENTS patients (62 resources each) and times one full bulk
# export (kick-off, poll, download of every NDJSON file): resources/s and the server's peak RSS
# while exporting.
set -euo pipefail
cd "$(dirname "$0")/../.."
HERE=scripts/bench
DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-16}
CONNS=${CONNS:-16 64}
SCENARIOS=${SCENARIOS:-read vread create update search transaction}
PEER=${PEER:-}
PEER_PID=${PEER_PID:-}
THREADS=${THREADS:-2}
SEEDED=${SEEDED:-10000}
PORT=${PORT:-18181}
PG_URL=${PG_URL:-postgres://postgres@127.0.0.1:5432}
BACKENDS=${BACKENDS:-sqlite postgres}
STAGES=${STAGES:-crud search auth export}
EXPORT_PATIENTS=${EXPORT_PATIENTS:-1000}
export SEEDED

if ! command -v wrk >/dev/null; then
  echo "installing wrk (Debian package)" >&2
  (apt-get update -qq && apt-get install -y -qq wrk) >/dev/null
fi
# BIN names an already built binary (skips the build).
if [ -z "${BIN:-}" ]; then
  cargo build --release --bin careplan >&2
  BIN=${CARGO_TARGET_DIR:-target}/release/careplan
fi
WORK=$(mktemp -d)
SERVER_PID=
cleanup() { [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null; wait 2>/dev/null; [ -n "${KEEP_LOG:-}" ] && cp "$WORK/server.log" "$KEEP_LOG"; rm -rf "$WORK"; }
trap cleanup EXIT

python3 -c "import sys; sys.path.insert(0, '$HERE'); import json, bodies; print(json.dumps(bodies.care_plan(7, with_id=False)))" > "$WORK/create.json"
python3 -c "import sys; sys.path.insert(0, '$HERE'); import json, bodies; print(json.dumps(bodies.care_plan(0, with_id=True)).replace('bench-0', 'bench-ID'))" > "$WORK/update.json"
python3 -c "import sys; sys.path.insert(0, '$HERE'); import json, bodies; print(json.dumps(bodies.transaction(3)))" > "$WORK/transaction.json"
touch "$WORK/results.tsv"

now_ms() { date +%s%3N; }

start_server() { # $1 = database URL
  local started; started=$(now_ms)
  # Authorization is off unless a stage passes AUTH_ENV (the issuer, audience and key).
  env CAREPLAN_AUTH_DISABLED="${AUTH_DISABLED:-true}" ${AUTH_ENV:-} \
    CAREPLAN_LOG=warn CAREPLAN_ADDR=127.0.0.1:$PORT CAREPLAN_DATABASE_URL="$1" "$BIN" serve >"$WORK/server.log" 2>&1 &
  SERVER_PID=$!
  until curl -sf -o /dev/null "http://127.0.0.1:$PORT/fhir/metadata"; do
    kill -0 "$SERVER_PID" 2>/dev/null || { cat "$WORK/server.log" >&2; exit 1; }
    sleep 0.005
  done
  STARTUP_MS=$(( $(now_ms) - started ))
}

stop_server() { kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true; SERVER_PID=; }

peak_rss_mib() { # $1 = pid
  [ -n "$1" ] && [ -r "/proc/$1/status" ] || { echo "-"; return; }
  awk '/VmHWM/ { printf "%.1f", $2 / 1024 }' "/proc/$1/status"
}

# PostgreSQL's processes: reset their peak RSS, and sum it.
pg_pids() { pgrep -x postgres 2>/dev/null || pgrep -f '^postgres:' 2>/dev/null || true; }
pg_reset() { for p in $(pg_pids); do echo 5 > "/proc/$p/clear_refs" 2>/dev/null || true; done; }
pg_peak_mib() {
  local total=0 kb
  for p in $(pg_pids); do
    kb=$(awk '/VmHWM/ { print $2 }' "/proc/$p/status" 2>/dev/null || echo 0)
    total=$(( total + ${kb:-0} ))
  done
  awk -v kb="$total" 'BEGIN { printf "%.1f", kb / 1024 }'
}

# Where the scenarios go: set by run_backend and run_peer.
TARGET_HOST=127.0.0.1; TARGET_PORT=$PORT; TARGET_BASE=/fhir; TARGET_PID=; TARGET_PG=

scenario() { # $1 = target label, $2 = name, $3 = lua script, $4 = connections, $5 = body file (optional)
  [ -n "$TARGET_PID" ] && echo 5 > "/proc/$TARGET_PID/clear_refs" 2>/dev/null || true
  [ -n "$TARGET_PG" ] && pg_reset
  BASE=$TARGET_BASE BODY_FILE=${5:-} wrk -t"$THREADS" -c"$4" -d"${DURATION}s" --latency -s "$HERE/$3" \
    "http://$TARGET_HOST:$TARGET_PORT" > "$WORK/wrk.txt"
  local rps p50 p99 errors rss
  rps=$(awk '/^Requests\/sec/ { printf "%d", $2 }' "$WORK/wrk.txt")
  p50=$(awk '$1 == "50%" { print $2 }' "$WORK/wrk.txt")
  p99=$(awk '$1 == "99%" { print $2 }' "$WORK/wrk.txt")
  errors=$(awk '/Non-2xx/ { print $5 } /Socket errors/ { print "socket" }' "$WORK/wrk.txt" | paste -sd' ')
  rss=$(peak_rss_mib "$TARGET_PID")
  [ -n "$TARGET_PG" ] && rss="$rss + pg $(pg_peak_mib)"
  printf "| %-10s | %-11s | %5s | %9s | %8s | %8s | %-16s | %s |\n" "$1" "$2" "$4" "$rps" "$p50" "$p99" "$rss" "${errors:-0}"
  printf "%s\t%s\t%s\t%s\n" "$1" "$2" "$4" "$rps" >> "$WORK/results.tsv"
}

crud_scenarios() { # $1 = target label
  local conns name
  for conns in $CONNS; do
    for name in $SCENARIOS; do
      case "$name" in
        read) scenario "$1" read read.lua "$conns" ;;
        vread) scenario "$1" vread vread.lua "$conns" ;;
        create) scenario "$1" create create.lua "$conns" "$WORK/create.json" ;;
        update) scenario "$1" update update.lua "$conns" "$WORK/update.json" ;;
        search) scenario "$1" search search.lua "$conns" ;;
        transaction) scenario "$1" transaction transaction.lua "$conns" "$WORK/transaction.json" ;;
      esac
    done
  done
}

run_backend() { # $1 = backend name, $2 = database URL
  start_server "$2"
  TARGET_HOST=127.0.0.1; TARGET_PORT=$PORT; TARGET_BASE=/fhir; TARGET_PID=$SERVER_PID
  TARGET_PG=; [ "$1" = postgres ] && TARGET_PG=1
  local seconds; seconds=$(python3 "$HERE/seed.py" 127.0.0.1 "$PORT" "$SEEDED")
  echo "$1: start-up to first answer ${STARTUP_MS} ms; seeded $SEEDED care plans in ${seconds} s" >&2
  crud_scenarios "$1"
  stop_server
}

run_peer() { # the FHIR server at $PEER, e.g. http://127.0.0.1:8081/fhir
  local rest=${PEER#http://}
  local hostport=${rest%%/*}
  TARGET_HOST=${hostport%%:*}; TARGET_PORT=${hostport##*:}
  TARGET_BASE=; [[ "$rest" == */* ]] && TARGET_BASE="/${rest#*/}"; TARGET_BASE=${TARGET_BASE%/}
  TARGET_PID=$PEER_PID; TARGET_PG=${PEER_PG:-}
  local seconds; seconds=$(python3 "$HERE/seed.py" "$TARGET_HOST" "$TARGET_PORT" "$SEEDED" "$TARGET_BASE")
  echo "peer $PEER: seeded $SEEDED care plans in ${seconds} s" >&2
  crud_scenarios peer
}

# Our throughput over the peer's, per backend, scenario and connection count.
print_ratios() {
  echo
  echo "| backend    | scenario    | conns | ours/s    | peer/s    | ratio |"
  echo "|------------|-------------|-------|-----------|-----------|-------|"
  awk -F'\t' '$1 == "peer" { peer[$2 "/" $3] = $4 }
    $1 != "peer" { ours[NR] = $0 }
    END { for (i in ours) { split(ours[i], f, "\t"); p = peer[f[2] "/" f[3]];
      if (p > 0) printf "| %-10s | %-11s | %5s | %9d | %9d | %5.2f |\n", f[1], f[2], f[3], f[4], p, f[4] / p } }' \
    "$WORK/results.tsv" | sort
}

# Search: a store grown in two steps, 1,000 then 10,000 patients (10 CarePlans, 2 CareTeams
# and 50 Tasks each: 62,000 then 620,000 resources), each query measured at both sizes.
SEARCH_SMALL=${SEARCH_SMALL:-1000}
SEARCH_LARGE=${SEARCH_LARGE:-10000}
QUERIES=${QUERIES:-plans active owner code view}

search_scenarios() { # $1 = backend, $2 = patients
  for q in $QUERIES; do
    echo 5 > "/proc/$SERVER_PID/clear_refs" 2>/dev/null || true
    QUERY=$q PATIENTS=$2 wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --latency -s "$HERE/query.lua" "http://127.0.0.1:$PORT" > "$WORK/wrk.txt"
    local rps p50 p99 errors
    rps=$(awk '/^Requests\/sec/ { printf "%d", $2 }' "$WORK/wrk.txt")
    p50=$(awk '$1 == "50%" { print $2 }' "$WORK/wrk.txt")
    p99=$(awk '$1 == "99%" { print $2 }' "$WORK/wrk.txt")
    errors=$(awk '/Non-2xx/ { print $5 } /Socket errors/ { print "socket" }' "$WORK/wrk.txt" | paste -sd' ')
    printf "| %-10s | %8s | %-6s | %9s | %8s | %8s | %8s | %s |\n" "$1" "$(( $2 * 62 ))" "$q" "$rps" "$p50" "$p99" "$(peak_rss_mib "$SERVER_PID")" "${errors:-0}"
  done
}

# The PostgreSQL plans of the benchmark queries, through auto_explain on fresh connections.
explain_postgres() { # $1 = database URL, $2 = database name
  local log; log=$(ls /var/log/postgresql/postgresql-*-main.log 2>/dev/null | head -1)
  [ -r "$log" ] || { echo "(PostgreSQL log not readable: plans skipped)" >&2; return; }
  psql "$PG_URL/postgres" -qc "ALTER DATABASE $2 SET session_preload_libraries = 'auto_explain'" \
    -c "ALTER DATABASE $2 SET auto_explain.log_min_duration = 0" -c "ALTER DATABASE $2 SET auto_explain.log_analyze = on" >/dev/null
  local before; before=$(wc -l < "$log")
  start_server "$1"
  for q in active owner code view; do
    local path; path=$(QUERY=$q PATIENTS=$SEARCH_LARGE lua_path "$q")
    curl -sf -o /dev/null "http://127.0.0.1:$PORT$path"
  done
  stop_server
  psql "$PG_URL/postgres" -qc "ALTER DATABASE $2 RESET ALL" >/dev/null
  tail -n +"$((before + 1))" "$log" | grep -v "FROM seaql_migrations\|pg_catalog\|SELECT 1" > "$WORK/plans.txt" || true
  echo "PostgreSQL plans of the benchmark queries (auto_explain, EXPLAIN ANALYZE):" >&2
  grep -E "duration|Scan|Join|Loop|Sort|Limit|Filter|Cond" "$WORK/plans.txt" | grep -v "seaql\|resources_pkey.*version" | cut -c1-220 >&2 || true
}

lua_path() { # the path query.lua would request for patient 42, practitioner 7, code 3
  case "$1" in
    active) echo "/fhir/CarePlan?patient=Patient/p42&status=active" ;;
    owner) echo "/fhir/Task?owner=Practitioner/pr7&status=requested,accepted,in-progress&_sort=-_lastUpdated" ;;
    code) echo "/fhir/Task?patient=Patient/p42&code=http://careplan.example/task-code%7Ccode-3" ;;
    view) echo "/fhir/CarePlan?patient=Patient/p42&_include=CarePlan:care-team&_revinclude=Task:based-on" ;;
  esac
}

# After a bulk load PostgreSQL's planner needs fresh statistics: autovacuum's analyze, or where
# autovacuum is off (as on this machine) the service's own refresh, every 10 s. Wait one round.
SETTLE=${SETTLE:-12}
settle() { # $1 = backend
  if [ "$1" = postgres ] && [ "$SETTLE" -gt 0 ]; then
    echo "$1: waiting ${SETTLE} s for the planner statistics after the bulk load" >&2
    sleep "$SETTLE"
  fi
}

run_search() { # $1 = backend, $2 = database URL, $3 = PostgreSQL database name (optional)
  start_server "$2"
  local seconds
  seconds=$(python3 "$HERE/seed_search.py" 127.0.0.1 "$PORT" 0 "$SEARCH_SMALL")
  echo "$1: seeded $(( SEARCH_SMALL * 62 )) resources ($SEARCH_SMALL patients) in ${seconds} s" >&2
  settle "$1"
  search_scenarios "$1" "$SEARCH_SMALL"
  seconds=$(python3 "$HERE/seed_search.py" 127.0.0.1 "$PORT" "$SEARCH_SMALL" "$SEARCH_LARGE")
  echo "$1: seeded $(( (SEARCH_LARGE - SEARCH_SMALL) * 62 )) more resources (to $SEARCH_LARGE patients) in ${seconds} s" >&2
  settle "$1"
  search_scenarios "$1" "$SEARCH_LARGE"
  stop_server
  if [ -n "${3:-}" ]; then explain_postgres "$2" "$3"; fi
}

# Token validation on versus off: read-by-id throughput on the same SQLite database, first with
# authorization disabled, then with an RS256 bearer token (PEM key, system/*.rs) on every request.
b64url() { openssl base64 -A | tr '+/' '-_' | tr -d '='; }
run_auth() {
  openssl genrsa -out "$WORK/rsa.key" 2048 2>/dev/null
  openssl rsa -in "$WORK/rsa.key" -pubout -out "$WORK/rsa.pub" 2>/dev/null
  local h p s
  h=$(printf '{"alg":"RS256","typ":"JWT"}' | b64url)
  p=$(printf '{"iss":"https://idp.bench","aud":"careplan-bench","sub":"bench","exp":%d,"scope":"system/*.rs"}' "$(( $(date +%s) + 3600 ))" | b64url)
  s=$(printf '%s.%s' "$h" "$p" | openssl dgst -sha256 -sign "$WORK/rsa.key" | b64url)
  local token="$h.$p.$s"
  start_server "sqlite://$WORK/auth.db"
  python3 "$HERE/seed.py" 127.0.0.1 "$PORT" "$SEEDED" >/dev/null
  TARGET_HOST=127.0.0.1; TARGET_PORT=$PORT; TARGET_BASE=/fhir; TARGET_PID=$SERVER_PID; TARGET_PG=
  scenario sqlite "read (auth off)" read.lua "$CONNECTIONS"
  stop_server
  AUTH_DISABLED=false AUTH_ENV="CAREPLAN_AUTH_ISSUER=https://idp.bench CAREPLAN_AUTH_AUDIENCE=careplan-bench CAREPLAN_AUTH_PUBLIC_KEYS=$WORK/rsa.pub" \
    start_server "sqlite://$WORK/auth.db"
  local status; status=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $token" "http://127.0.0.1:$PORT/fhir/CarePlan/bench-1")
  [ "$status" = 200 ] || { echo "the bench token was refused ($status)" >&2; cat "$WORK/server.log" >&2; exit 1; }
  TARGET_PID=$SERVER_PID
  TOKEN=$token scenario sqlite "read (auth on)" read.lua "$CONNECTIONS"
  stop_server
}

# One full bulk export of a seeded store: resources/s from the kick-off to the last file's
# last byte, and the server's (and PostgreSQL's) peak RSS meanwhile.
run_export() { # $1 = backend, $2 = database URL
  start_server "$2"
  local seconds; seconds=$(python3 "$HERE/seed_search.py" 127.0.0.1 "$PORT" 0 "$EXPORT_PATIENTS")
  echo "$1: seeded $(( EXPORT_PATIENTS * 62 )) resources for the export in ${seconds} s" >&2
  echo 5 > "/proc/$SERVER_PID/clear_refs" 2>/dev/null || true
  [ "$1" = postgres ] && pg_reset
  local before; before=$(peak_rss_mib "$SERVER_PID")
  local took n files; read -r took n files < <(python3 "$HERE/export.py" 127.0.0.1 "$PORT")
  local rss; rss=$(peak_rss_mib "$SERVER_PID")
  [ "$1" = postgres ] && rss="$rss + pg $(pg_peak_mib)"
  printf "| %-10s | %9s | %5s | %7s | %9s | %-16s | %s |\n" "$1" "$n" "$files" "$took" \
    "$(awk -v n="$n" -v s="$took" 'BEGIN { printf "%d", n / s }')" "$rss" "$before"
  stop_server
}

echo "careplan $($BIN --version | awk '{print $2}') on $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo); wrk -t$THREADS -c$CONNECTIONS -d${DURATION}s, $SEEDED care plans over $((SEEDED / 10)) patients"
echo
if [[ " $STAGES " == *" crud "* ]]; then
echo "| backend    | scenario    | conns | req/s     | p50      | p99      | peak MiB         | non-2xx |"
echo "|------------|-------------|-------|-----------|----------|----------|------------------|---------|"
if [ -n "$PEER" ]; then
  run_peer
fi
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
if [ -n "$PEER" ]; then
  print_ratios
fi

fi
if [[ " $STAGES " == *" search "* ]]; then
echo
echo "| backend    | resources | query  | req/s     | p50      | p99      | peak MiB | non-2xx |"
echo "|------------|----------|--------|-----------|----------|----------|----------|---------|"
if [[ " $BACKENDS " == *" sqlite "* ]]; then
  run_search sqlite "sqlite://$WORK/search.db"
fi
if [[ " $BACKENDS " == *" postgres "* ]] && pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
  psql "$PG_URL/postgres" -qc "DROP DATABASE IF EXISTS careplan_search" -c "CREATE DATABASE careplan_search" >/dev/null
  run_search postgres "$PG_URL/careplan_search" careplan_search
fi
fi
if [[ " $STAGES " == *" auth "* ]]; then
echo
echo "| backend    | scenario    | conns | req/s     | p50      | p99      | peak MiB         | non-2xx |"
echo "|------------|-------------|-------|-----------|----------|----------|------------------|---------|"
run_auth
fi
if [[ " $STAGES " == *" export "* ]]; then
echo
echo "| backend    | resources | files | seconds | resources/s | peak MiB         | MiB before |"
echo "|------------|-----------|-------|---------|-------------|------------------|------------|"
if [[ " $BACKENDS " == *" sqlite "* ]]; then
  run_export sqlite "sqlite://$WORK/export.db"
fi
if [[ " $BACKENDS " == *" postgres "* ]] && pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
  psql "$PG_URL/postgres" -qc "DROP DATABASE IF EXISTS careplan_export" -c "CREATE DATABASE careplan_export" >/dev/null
  run_export postgres "$PG_URL/careplan_export"
fi
fi
