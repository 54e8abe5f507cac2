#!/usr/bin/env bash
# Cluster figures: fan-out with subscribers on one node versus spread over two
# nodes sharing one Redis (a redis-server started here), and Redis operations
# per published event (from INFO commandstats).
#
# usage: bench/cluster.sh [SUBSCRIBERS] [RATE] [DURATION]   (defaults 2000 100 10)
# Needs target/release/resonance and target/release/resonance-bench (bench/run.sh builds them).
set -euo pipefail
cd "$(dirname "$0")/.."
SUBS=${1:-2000}; RATE=${2:-100}; DUR=${3:-10}
BIN=${RESONANCE_BIN:-target/release/resonance}
BENCH=${BENCH_BIN:-target/release/resonance-bench}
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
RP=$(free_port)
redis-server --port "$RP" --save '' --appendonly no --bind 127.0.0.1 --daemonize no > /dev/null 2>&1 &
RPID=$!
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; kill "$RPID" 2>/dev/null || true; }
trap cleanup EXIT
sleep 0.5
start_node() {
  RESONANCE_PORT=$1 RESONANCE_APP_ID=12345 RESONANCE_APP_KEY=app-key RESONANCE_APP_SECRET=app-secret \
  RESONANCE_LOG=warn RESONANCE_ADAPTER=${2:-local} RESONANCE_REDIS_URL=redis://127.0.0.1:$RP/0 \
    "$BIN" start > "/tmp/resonance-cluster-$1.log" 2>&1 &
  PIDS+=($!)
  for _ in $(seq 50); do curl -s -m 1 "http://127.0.0.1:$1/ready" | grep -q ready && return; sleep 0.1; done
  echo "node on $1 did not become ready" >&2; exit 1
}
# CPU seconds (utime + stime) of the given pids, summed.
cpu_s() { python3 -c '
import os, sys
t = 0
for p in sys.argv[1:]:
    f = open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()
    t += int(f[11]) + int(f[12])
print(t / os.sysconf("SC_CLK_TCK"))' "$@"; }
publishes() { redis-cli -p "$RP" INFO commandstats | sed -n 's/^cmdstat_publish:calls=\([0-9]*\).*/\1/p' | head -1; }
P1=$(free_port); start_node "$P1" local
echo "== one node (local adapter)"
c0=$(cpu_s "${PIDS[@]}")
"$BENCH" fanout --url "ws://127.0.0.1:$P1" --pid "${PIDS[0]}" --subscribers "$SUBS" --channels 10 --rate "$RATE" --duration "$DUR" --quiet --label one-node --tag cluster-1 2>&1 | grep -E '^(received|latency|server cpu)' || true
c1=$(cpu_s "${PIDS[@]}")
echo "node CPU during the run: $(python3 -c "print(round($c1-$c0, 2))") s"
kill "${PIDS[0]}"; PIDS=()
A=$(free_port); B=$(free_port)
start_node "$A" redis; start_node "$B" redis
before=$(publishes); before=${before:-0}
c0=$(cpu_s "${PIDS[@]}")
echo "== two nodes (redis adapter), subscribers spread over both, publisher on the first"
"$BENCH" fanout --url "ws://127.0.0.1:$A,ws://127.0.0.1:$B" --pid "${PIDS[0]}" --subscribers "$SUBS" --channels 10 --rate "$RATE" --duration "$DUR" --quiet --label two-nodes --tag cluster-2 2>&1 | grep -E '^(received|latency|server cpu)' || true
after=$(publishes); after=${after:-0}
c1=$(cpu_s "${PIDS[@]}")
echo "both nodes' CPU during the run, summed: $(python3 -c "print(round($c1-$c0, 2))") s"
events=$((RATE * DUR))
echo "redis PUBLISH calls during the run: $((after - before)) for $events events ($(python3 -c "print(round(($after-$before)/$events, 3))") per event)"
