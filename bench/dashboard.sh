#!/usr/bin/env bash
# What the live dashboard costs the fan-out: the same fan-out run (resonance-bench) against
# the server started three times in one go — dashboard off, on but nobody watching, and on
# with a live dashboard open (figures every second, debug console subscribed to the core's
# happenings). Prints the report table; read the ratios, not the absolute figures.
#
# usage: bench/dashboard.sh [--smoke]
#   --smoke   200 subscribers for 3 s (a quick check that all three runs work)
# environment: RESONANCE_BENCH_PORT (16101), BENCH_THREADS (1), CARGO_TARGET_DIR,
#              BENCH_SKIP_BUILD=1 (use the binaries as they are)
# needs: curl, node, and tests/cluster's node_modules (npm ci there) for the watcher's `ws`.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
SMOKE=0
[ "${1:-}" = "--smoke" ] && SMOKE=1
PORT=${RESONANCE_BENCH_PORT:-16101}
THREADS=${BENCH_THREADS:-1}
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
BENCH="$TARGET_DIR/release/resonance-bench"
SERVER="$TARGET_DIR/release/resonance"
APP_ID=12345 APP_KEY=app-key APP_SECRET=app-secret
TOKEN=bench-dashboard-token-0123456789
WS_MODULE="$ROOT/tests/cluster/node_modules/ws"
[ -d "$WS_MODULE" ] || { echo "run npm ci in tests/cluster first (the watcher uses its ws)" >&2; exit 2; }
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if [ "${BENCH_SKIP_BUILD:-0}" != 1 ]; then
  cargo build --release --workspace >&2
fi
OUT=$(mktemp "${TMPDIR:-/tmp}/resonance-bench-dashboard.XXXXXX.jsonl")
LOG=$(mktemp -d "${TMPDIR:-/tmp}/resonance-bench-dashboard-logs.XXXXXX")
SERVER_PID="" WATCHER_PID=""
cleanup() {
  [ -n "$WATCHER_PID" ] && kill -TERM "$WATCHER_PID" 2>/dev/null || true
  [ -n "$SERVER_PID" ] && kill -TERM "$SERVER_PID" 2>/dev/null || true
  for _ in $(seq 1 50); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.2; done
  WATCHER_PID="" SERVER_PID=""
}
trap cleanup EXIT

for mode in off unwatched watched; do
  dashboard=1; [ "$mode" = off ] && dashboard=0
  RESONANCE_HOST=127.0.0.1 RESONANCE_PORT=$PORT RESONANCE_APP_ID=$APP_ID \
  RESONANCE_APP_KEY=$APP_KEY RESONANCE_APP_SECRET=$APP_SECRET \
  RESONANCE_DASHBOARD=$dashboard RESONANCE_DASHBOARD_TOKEN=$TOKEN \
    "$SERVER" start > "$LOG/$mode.log" 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 1 75); do curl -sf -m 1 "http://127.0.0.1:$PORT/up" >/dev/null && break; sleep 0.2; done
  if [ "$mode" = watched ]; then
    cookie=$(curl -sf -D - -o /dev/null -H 'Content-Type: application/json' \
      -d "{\"token\":\"$TOKEN\"}" "http://127.0.0.1:$PORT/dashboard/login" \
      | sed -n 's/^set-cookie: \([^;]*\).*/\1/Ip' | tr -d '\r')
    node -e '
      const WebSocket = require(process.argv[1]);
      const ws = new WebSocket(process.argv[2], { headers: { Cookie: process.argv[3] } });
      let stats = 0, log = 0;
      ws.on("message", (m) => { const t = JSON.parse(m).type; if (t === "stats") stats++; else log++; });
      ws.on("open", () => console.log("watching"));
      ws.on("error", (e) => { console.error(e.message); process.exit(1); });
      process.on("SIGTERM", () => { console.log(`dashboard got ${stats} stats and ${log} log messages`); process.exit(0); });
    ' "$WS_MODULE" "ws://127.0.0.1:$PORT/dashboard/live?app=$APP_ID" "$cookie" > "$LOG/watcher.log" 2>&1 &
    WATCHER_PID=$!
    for _ in $(seq 1 50); do grep -q watching "$LOG/watcher.log" && break; sleep 0.1; done
    grep -q watching "$LOG/watcher.log" || { echo "the dashboard watcher did not connect:" >&2; cat "$LOG/watcher.log" >&2; exit 1; }
  fi
  echo "== dashboard $mode" >&2
  if [ "$SMOKE" = 1 ]; then
    args=(--subscribers 200 --channels 10 --rate 50 --duration 3 --grace 3)
  else
    args=(--subscribers 2000 --channels 10 --rate 100 --duration 20)
  fi
  "$BENCH" fanout "${args[@]}" --url "ws://127.0.0.1:$PORT" --app-id "$APP_ID" --key "$APP_KEY" \
    --secret "$APP_SECRET" --pid "$SERVER_PID" --label "dashboard-$mode" --tag fanout \
    --threads "$THREADS" --json "$OUT" --strict > /dev/null
  if [ -n "$WATCHER_PID" ]; then
    kill -TERM "$WATCHER_PID"; wait "$WATCHER_PID" 2>/dev/null || true; WATCHER_PID=""
    cat "$LOG/watcher.log" >&2
  fi
  cleanup
  sleep 1
done
"$BENCH" report "$OUT"
echo "results: $OUT" >&2
