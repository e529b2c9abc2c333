#!/usr/bin/env bash
# Start a fresh daemon per scenario (SQLite in a temp dir, or a scratch PostgreSQL database),
# wait for /-/ready, run bench.loadgen against it, then stop the daemon and remove its data.
#
#   bench/run.sh sqlite|postgres                  # the standard scenarios (see bench/README.md)
#   bench/run.sh sqlite|postgres -- LOADGEN_ARGS  # one scenario with your own loadgen arguments
#
# Environment: BENCH_PORT (default: a free port), BENCH_DURATION (20), BENCH_WARMUP (2),
# BENCH_JSON (set: --json), BENCH_PG (postgresql://postgres@127.0.0.1:5432: the server for
# `postgres`, trust auth; a scratch database is created and dropped per scenario),
# BENCH_SQLITE_SYNCHRONOUS (full; or normal). Other BRIDGE_* variables reach the daemon.
set -euo pipefail
cd "$(dirname "$0")/.."

backend=${1:-}
case "$backend" in
  sqlite | postgres) shift ;;
  *) echo "usage: $0 sqlite|postgres [-- loadgen args]" >&2; exit 2 ;;
esac
[ "${1:-}" = "--" ] && shift

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
port=${BENCH_PORT:-$(free_port)}
duration=${BENCH_DURATION:-20}
warmup=${BENCH_WARMUP:-2}
pg=${BENCH_PG:-postgresql://postgres@127.0.0.1:5432}
url="http://127.0.0.1:$port"
json=()
[ -n "${BENCH_JSON:-}" ] && json=(--json)

daemon_pid=""
workdir=""
database=""

stop_daemon() {
  if [ -n "$daemon_pid" ]; then
    kill -TERM "$daemon_pid" 2>/dev/null || true
    wait "$daemon_pid" 2>/dev/null || true
    daemon_pid=""
  fi
  if [ -n "$database" ]; then
    psql "$pg/postgres" -qAtc "DROP DATABASE IF EXISTS \"$database\" WITH (FORCE)" >/dev/null
    database=""
  fi
  if [ -n "$workdir" ]; then
    rm -rf "$workdir"
    workdir=""
  fi
}
trap stop_daemon EXIT
trap 'exit 130' INT TERM

start_daemon() {
  if curl -s -o /dev/null "$url/"; then
    echo "something already answers on $url; set BENCH_PORT to a free port" >&2
    exit 1
  fi
  workdir=$(mktemp -d -t bench-bridge.XXXXXX)
  local db_url=""
  if [ "$backend" = postgres ]; then
    database="bench_$$_$RANDOM"
    psql "$pg/postgres" -qAtc "CREATE DATABASE \"$database\"" >/dev/null
    db_url="postgresql+asyncpg://${pg#postgresql://}/$database"
  fi
  BRIDGE_DATA_DIR="$workdir" BRIDGE_PORT="$port" BRIDGE_DATABASE_URL="$db_url" \
    BRIDGE_LOG_LEVEL="${BRIDGE_LOG_LEVEL:-warning}" \
    BRIDGE_SQLITE_SYNCHRONOUS="${BENCH_SQLITE_SYNCHRONOUS:-full}" \
    python3 -m bridge run >"$workdir/daemon.log" 2>&1 &
  daemon_pid=$!
  local deadline=$((SECONDS + 60))
  until curl -sf "$url/-/ready" >/dev/null; do
    if ! kill -0 "$daemon_pid" 2>/dev/null || [ $SECONDS -ge $deadline ]; then
      echo "daemon did not become ready; its log:" >&2
      cat "$workdir/daemon.log" >&2
      exit 1
    fi
    sleep 0.2
  done
}

scenario() {
  echo "== $backend: loadgen $*"
  start_daemon
  local rc=0
  python3 -m bench.loadgen --url "$url" --duration "$duration" --warmup "$warmup" \
    "${json[@]}" "$@" || rc=$?
  if ! kill -0 "$daemon_pid" 2>/dev/null; then
    local status=0
    wait "$daemon_pid" || status=$?
    daemon_pid=""
    echo "-- the daemon exited during the run (status $status); last lines of its log:" >&2
    tail -n 40 "$workdir/daemon.log" >&2
    rc=1
  elif [ $rc -ne 0 ]; then
    echo "-- last lines of the daemon's log:" >&2
    tail -n 40 "$workdir/daemon.log" >&2
  fi
  stop_daemon
  return $rc
}

if [ $# -gt 0 ]; then
  scenario "$@"
  exit
fi

failed=0
scenario --kind webhook --batch 1 --concurrency 16 || failed=1
scenario --kind webhook --batch 100 --concurrency 16 || failed=1
scenario --kind apiv2 --batch 100 --concurrency 16 || failed=1
scenario --kind webhook --batch 10 --concurrency 16 --rate 1000 || failed=1
scenario --kind apiv2 --batch 10 --concurrency 16 --rate 1000 || failed=1
exit $failed
