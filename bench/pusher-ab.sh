#!/usr/bin/env bash
# Pusher path A/B: two binaries alternated (ROUNDS rounds, a fresh server each), 5,000 idle
# connections over 100 channels, then 2,000 subscribers over 10 channels at --rate 200
# (40k deliveries/s) for 15 s through the signed Pusher API. Prints per-run CPU and RSS.
# usage: BEFORE_BIN=path AFTER_BIN=path [ROUNDS=3] bench/pusher-ab.sh
set -euo pipefail
cd "$(dirname "$0")/.."
BEFORE=${BEFORE_BIN:?set BEFORE_BIN}; AFTER=${AFTER_BIN:-target/release/resonance}
BENCH=${BENCH_BIN:-target/release/resonance-bench}
mkdir -p bench/results
OUT=bench/results/pusher-ab-$(date -u +%Y%m%dT%H%M%SZ).jsonl; : > "$OUT"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
for round in $(seq "${ROUNDS:-3}"); do for which in before after; do
  bin=$BEFORE; [ "$which" = after ] && bin=$AFTER
  P=$(free_port)
  RESONANCE_HOST=127.0.0.1 RESONANCE_PORT=$P RESONANCE_APP_ID=a1b2c3d4e5f60718 RESONANCE_APP_KEY=app-key \
    RESONANCE_APP_SECRET=app-secret RESONANCE_LOG=warn "$bin" start > /dev/null 2>&1 & SPID=$!
  for _ in $(seq 100); do curl -s -m 1 -o /dev/null "http://127.0.0.1:$P/" && break; sleep 0.1; done
  for mode in idle fanout; do
    if [ "$mode" = idle ]; then args=(idle --connections 5000 --channels 100 --hold 2)
    else args=(fanout --subscribers 2000 --channels 10 --rate 200 --duration 15); fi
    "$BENCH" "${args[@]}" --url "ws://127.0.0.1:$P" --app-id a1b2c3d4e5f60718 --key app-key --secret app-secret \
      --pid "$SPID" --label "$which" --tag "$mode-pusher-r$round" --json "$OUT" --quiet 2>&1 >/dev/null \
      | grep -E '^(server cpu|rss)' | sed "s/^/$which r$round $mode: /" || true
    sleep 2
  done
  kill "$SPID"; wait "$SPID" 2>/dev/null || true
done; done
echo "results: $OUT" >&2
