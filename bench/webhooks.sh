#!/usr/bin/env bash
# Fan-out and churn with webhooks off vs on, side by side in one run (alternating, ROUNDS times),
# plus nothing else: the figure the webhooks must not move. "on" points every event type at a
# local receiver (tests/cluster/lib/webhook_receiver.py, validating each request with the Python
# pusher SDK). Uses the release binaries; builds nothing.
# usage: bench/webhooks.sh   env: ROUNDS (2), RESONANCE_BIN, BENCH_BIN, PYTHON, RESONANCE_BENCH_PORT (16101)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SERVER=${RESONANCE_BIN:-$ROOT/target/release/resonance}
BENCH=${BENCH_BIN:-$ROOT/target/release/resonance-bench}
PYTHON=${PYTHON:-$ROOT/target/pyvenv/bin/python}
PORT=${RESONANCE_BENCH_PORT:-16101}
HOOK_PORT=$((PORT + 1))
ROUNDS=${ROUNDS:-2}
OUT=$(mktemp "${TMPDIR:-/tmp}/resonance-webhooks-bench.XXXXXX.jsonl")
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
"$PYTHON" "$ROOT/tests/cluster/lib/webhook_receiver.py" "$HOOK_PORT" 12345 app-key app-secret > /dev/null 2>&1 &
HOOK_PID=$!
SERVER_PID=""
cleanup() { [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null; kill "$HOOK_PID" 2>/dev/null; true; }
trap cleanup EXIT
run() { # label, extra env...
  local label=$1; shift
  env "$@" RESONANCE_HOST=127.0.0.1 RESONANCE_PORT=$PORT RESONANCE_APP_ID=12345 RESONANCE_APP_KEY=app-key \
    RESONANCE_APP_SECRET=app-secret RESONANCE_LOG=warn "$SERVER" start > /dev/null 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 100); do curl -fs "http://127.0.0.1:$PORT/up" > /dev/null && break; sleep 0.1; done
  "$BENCH" fanout --subscribers 2000 --channels 10 --rate 100 --duration 10 --url "ws://127.0.0.1:$PORT" \
    --pid "$SERVER_PID" --label "$label" --tag fanout-20k --json "$OUT" --quiet > /dev/null
  "$BENCH" churn --subscribers 500 --channels 10 --rate 50 --duration 5 --churn-rate 50 --url "ws://127.0.0.1:$PORT" \
    --pid "$SERVER_PID" --label "$label" --tag churn --json "$OUT" --quiet > /dev/null
  kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true; SERVER_PID=""
}
for _ in $(seq "$ROUNDS"); do
  run webhooks-off
  run webhooks-on RESONANCE_APP_WEBHOOK_URL="http://127.0.0.1:$HOOK_PORT/hook"
done
"$BENCH" report "$OUT"
echo "webhook requests received: $(curl -fs "http://127.0.0.1:$HOOK_PORT/log" | "$PYTHON" -c 'import json,sys; d=json.load(sys.stdin); print(len(d["valid"]), "valid,", len(d["invalid"]), "invalid")')"
echo "raw results: $OUT"
