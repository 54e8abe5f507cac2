#!/usr/bin/env bash
# ws vs wss side by side, one run: the same server binary plain and with the built-in TLS
# (a self-signed certificate made with openssl for the run), fresh for each measurement:
# RSS per idle subscribed connection, then CPU seconds per million deliveries at a moderate
# rate. Prints the `resonance-bench report` table; raw lines in bench/results/tls-<stamp>.jsonl.
#
#   bench/tls.sh                      # IDLE_CONNS=10000, RATE=100 events/s (20k deliveries/s)
#   BENCH_SKIP_BUILD=1 IDLE_CONNS=5000 DURATION=15 bench/tls.sh
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
PORT=${RESONANCE_BENCH_PORT:-16011}
IDLE_CONNS=${IDLE_CONNS:-10000}
RATE=${RATE:-100}
DURATION=${DURATION:-20}
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
BENCH="$TARGET_DIR/release/resonance-bench"
SERVER=${RESONANCE_BIN:-$TARGET_DIR/release/resonance}
APP_ID=12345 APP_KEY=app-key APP_SECRET=app-secret

ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if [ "${BENCH_SKIP_BUILD:-0}" != 1 ]; then
  cargo build --release --workspace >&2
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/resonance-bench-tls.XXXXXX")
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=127.0.0.1 \
  -addext subjectAltName=IP:127.0.0.1 -keyout "$WORK/key.pem" -out "$WORK/cert.pem" 2>/dev/null
mkdir -p bench/results
OUT="bench/results/tls-$(date -u +%Y%m%dT%H%M%SZ).jsonl"
: > "$OUT"

SERVER_PID=""
stop_server() {
  [ -n "$SERVER_PID" ] || return 0
  kill -TERM "$SERVER_PID" 2>/dev/null || true
  for _ in $(seq 1 75); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.2; done
  kill -KILL "$SERVER_PID" 2>/dev/null || true
  SERVER_PID=""
}
cleanup() { stop_server; rm -rf "$WORK"; }
trap cleanup EXIT

start() { # ws|wss
  local tls=()
  [ "$1" = wss ] && tls=(RESONANCE_TLS_CERT="$WORK/cert.pem" RESONANCE_TLS_KEY="$WORK/key.pem")
  env RESONANCE_HOST=127.0.0.1 RESONANCE_PORT=$PORT RESONANCE_APP_ID=$APP_ID \
    RESONANCE_APP_KEY=$APP_KEY RESONANCE_APP_SECRET=$APP_SECRET "${tls[@]}" \
    "$SERVER" start > "$WORK/server-$1.log" 2>&1 &
  SERVER_PID=$!
  local scheme=http; [ "$1" = wss ] && scheme=https
  for _ in $(seq 1 75); do
    curl -ksf -m 1 "$scheme://127.0.0.1:$PORT/up" >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  echo "server ($1) did not become ready:" >&2; tail -20 "$WORK/server-$1.log" >&2; exit 1
}

run() { # ws|wss tag args...
  local mode=$1 tag=$2; shift 2
  start "$mode"
  echo "== $mode: $tag" >&2
  "$BENCH" "$@" --url "$mode://127.0.0.1:$PORT" --app-id $APP_ID --key $APP_KEY \
    --secret $APP_SECRET --pid "$SERVER_PID" --label "$mode" --tag "$tag" --threads 1 \
    --json "$OUT" --strict --quiet > /dev/null
  stop_server
}

for mode in ws wss; do
  run "$mode" "idle-$IDLE_CONNS" idle --connections "$IDLE_CONNS" --channels 100 --hold 3
  run "$mode" fanout-20k fanout --subscribers 2000 --channels 10 --rate "$RATE" --duration "$DURATION"
done
"$BENCH" report "$OUT"
