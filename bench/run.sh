#!/usr/bin/env bash
# Build the workspace, start Resonance (and optionally Soketi) on loopback, run the standard
# load matrix against each with resonance-bench, collect the JSON lines and print a table.
#
# usage: bench/run.sh [--with-soketi] [--smoke] [--only-soketi]
#   --with-soketi   also measure Soketi (../shared/peers/soketi/start.sh, installs under /tmp)
#   --only-soketi   measure Soketi only (no Resonance)
#   --smoke         a few hundred connections for a few seconds; exits non-zero on any
#                   failure or loss (for CI)
# environment: RESONANCE_BENCH_PORT (16001), SOKETI_BENCH_PORT (17001), BENCH_THREADS (1),
#              SOKETI_START (path of Soketi's start.sh), CARGO_TARGET_DIR,
#              RESONANCE_BIN (server binary; default from the target dir),
#              BENCH_SKIP_BUILD=1 (use the binaries as they are)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

WITH_RESONANCE=1 WITH_SOKETI=0 SMOKE=0
for arg in "$@"; do
  case "$arg" in
    --with-soketi) WITH_SOKETI=1 ;;
    --only-soketi) WITH_SOKETI=1 WITH_RESONANCE=0 ;;
    --smoke) SMOKE=1 ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) echo "unknown argument: $arg" >&2; exit 2 ;;
  esac
done

RES_PORT=${RESONANCE_BENCH_PORT:-16001}
SOK_PORT=${SOKETI_BENCH_PORT:-17001}
THREADS=${BENCH_THREADS:-1}
SOKETI_START=${SOKETI_START:-$ROOT/../shared/peers/soketi/start.sh}
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
BENCH="$TARGET_DIR/release/resonance-bench"
SERVER=${RESONANCE_BIN:-$TARGET_DIR/release/resonance}
APP_ID=12345 APP_KEY=app-key APP_SECRET=app-secret

# Many connections: the tool raises its own limit; the servers inherit this one.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

if [ "${BENCH_SKIP_BUILD:-0}" != 1 ]; then
  echo "== building (release)" >&2
  cargo build --release --workspace >&2
fi

STAMP=$(date -u +%Y%m%dT%H%M%SZ)
if [ "$SMOKE" = 1 ]; then
  OUTDIR=$(mktemp -d "${TMPDIR:-/tmp}/resonance-bench-smoke.XXXXXX")
else
  OUTDIR="$ROOT/bench/results"
  mkdir -p "$OUTDIR"
fi
OUT="$OUTDIR/$STAMP.jsonl"
LOGDIR=$(mktemp -d "${TMPDIR:-/tmp}/resonance-bench-logs.XXXXXX")
: > "$OUT"

SERVER_PID=""
stop_server() {
  [ -n "$SERVER_PID" ] || return 0
  kill -TERM "$SERVER_PID" 2>/dev/null || true
  for _ in $(seq 1 75); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.2; done
  kill -KILL "$SERVER_PID" 2>/dev/null || true
  SERVER_PID=""
}
trap stop_server EXIT

wait_http() { # url, seconds
  local url=$1 tries=$(( $2 * 5 ))
  for _ in $(seq 1 "$tries"); do
    curl -sf -m 1 "$url" >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  return 1
}

start_resonance() {
  RESONANCE_HOST=127.0.0.1 RESONANCE_PORT=$RES_PORT \
  RESONANCE_APP_ID=$APP_ID RESONANCE_APP_KEY=$APP_KEY RESONANCE_APP_SECRET=$APP_SECRET \
    "$SERVER" start > "$LOGDIR/resonance.log" 2>&1 &
  SERVER_PID=$!
  if ! wait_http "http://127.0.0.1:$RES_PORT/up" 15; then
    echo "resonance did not become ready; log:" >&2
    tail -20 "$LOGDIR/resonance.log" >&2
    exit 1
  fi
}

start_soketi() {
  if [ ! -x "$SOKETI_START" ] && [ ! -f "$SOKETI_START" ]; then
    echo "Soketi start script not found at $SOKETI_START" >&2
    exit 1
  fi
  SERVER_PID=$(bash "$SOKETI_START" "$SOK_PORT" "$APP_ID" "$APP_KEY" "$APP_SECRET")
}

FAILED=()
bench() { # label port tag mode args...
  local label=$1 port=$2 tag=$3; shift 3
  echo "== $label: $tag" >&2
  if ! "$BENCH" "$@" --url "ws://127.0.0.1:$port" --app-id "$APP_ID" --key "$APP_KEY" \
      --secret "$APP_SECRET" --pid "$SERVER_PID" --label "$label" --tag "$tag" \
      --threads "$THREADS" --json "$OUT" --strict > /dev/null; then
    FAILED+=("$label/$tag")
  fi
  # Let the server close the previous run's connections before the next one.
  sleep 2
}

matrix() { # label port
  local l=$1 p=$2
  if [ "$SMOKE" = 1 ]; then
    bench "$l" "$p" idle idle --connections 300 --channels 10 --hold 1
    bench "$l" "$p" fanout fanout --subscribers 200 --channels 10 --rate 50 --duration 3 --grace 3
    bench "$l" "$p" churn churn --subscribers 200 --channels 10 --rate 50 --duration 3 \
      --churn-rate 20 --grace 3
    bench "$l" "$p" presence presence --members 20 --join-rate 50 --duration 3 --cycle-rate 10
    return
  fi
  # Idle first, on a fresh server, so that its memory figures are not skewed by earlier runs.
  bench "$l" "$p" idle-15k idle --connections 15000 --channels 100 --hold 5
  # 2000 subscribers over 10 channels: deliveries/s = rate * 200.
  bench "$l" "$p" fanout-20k fanout --subscribers 2000 --channels 10 --rate 100 --duration 20
  bench "$l" "$p" fanout-80k fanout --subscribers 2000 --channels 10 --rate 400 --duration 10
  bench "$l" "$p" fanout-100k fanout --subscribers 2000 --channels 10 --rate 500 --duration 10
  bench "$l" "$p" churn churn --subscribers 2000 --channels 10 --rate 100 --duration 10 \
    --churn-rate 100
  bench "$l" "$p" presence presence --members 100 --channels 1 --join-rate 50 --duration 10
}

if [ "$WITH_RESONANCE" = 1 ]; then
  echo "== starting resonance on 127.0.0.1:$RES_PORT" >&2
  start_resonance
  matrix resonance "$RES_PORT"
  stop_server
fi
if [ "$WITH_SOKETI" = 1 ]; then
  echo "== starting soketi on 127.0.0.1:$SOK_PORT" >&2
  start_soketi
  matrix soketi "$SOK_PORT"
  stop_server
fi

TABLE=$("$BENCH" report "$OUT")
echo
echo "$TABLE"
echo
echo "results: $OUT" >&2
if [ "$SMOKE" = 0 ]; then
  echo "$TABLE" > "${OUT%.jsonl}.md"
fi
if [ "${#FAILED[@]}" -gt 0 ]; then
  echo "runs with failures or loss: ${FAILED[*]}" >&2
  [ "$SMOKE" = 1 ] && exit 1
fi
exit 0
