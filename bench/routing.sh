#!/usr/bin/env bash
# Interest-based routing against the single-channel (broadcast) design, side by side in one run:
# 3 nodes over one redis-server started here, the load tool's subscribers round-robin over the
# nodes, events through the first node's HTTP API.
#   (a) concentrated: 30 channels, so subscriber i (channel i%30, node i%3) puts each channel on
#       exactly one node;
#   (b) spread: 31 channels, so every channel has subscribers on every node.
# For each design and layout: events published, messages and payload bytes the nodes received
# from Redis (their shutdown log line), Redis's own output bytes (INFO stats
# total_net_output_bytes), and server CPU (user+sys of the 3 nodes, /proc) per delivery.
#
# usage: bench/routing.sh [SUBSCRIBERS] [RATE] [DURATION]   (defaults 600 200 10)
# Needs target/release/resonance and target/release/resonance-bench (bench/run.sh builds them).
set -euo pipefail
cd "$(dirname "$0")/.."
SUBS=${1:-600}; RATE=${2:-200}; DUR=${3:-10}
BIN=${RESONANCE_BIN:-target/release/resonance}
BENCH=${BENCH_BIN:-target/release/resonance-bench}
TMP=$(mktemp -d)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
RP=$(free_port)
redis-server --port "$RP" --save '' --appendonly no --bind 127.0.0.1 --daemonize no > /dev/null 2>&1 &
RPID=$!
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; kill "$RPID" 2>/dev/null || true; rm -rf "$TMP"; }
trap cleanup EXIT
for _ in $(seq 50); do redis-cli -p "$RP" PING 2>/dev/null | grep -q PONG && break; sleep 0.1; done
clk=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
redis_out() { redis-cli -p "$RP" INFO stats | sed -n 's/^total_net_output_bytes:\([0-9]*\).*/\1/p' | tr -d '\r'; }
publishes() { redis-cli -p "$RP" INFO commandstats | sed -n 's/^cmdstat_publish:calls=\([0-9]*\).*/\1/p' | head -1; }

start_node() { # port routing log
  RESONANCE_PORT=$1 RESONANCE_APP_ID=12345 RESONANCE_APP_KEY=app-key RESONANCE_APP_SECRET=app-secret \
  RESONANCE_LOG=info RESONANCE_ADAPTER=redis RESONANCE_REDIS_URL=redis://127.0.0.1:$RP/0 \
  RESONANCE_CLUSTER_ROUTING=$2 RESONANCE_CLUSTER_PREFIX=bench-$2 RESONANCE_REDIS_PREFIX=${INGEST_PREFIX-laravel_database_} NO_COLOR=1 \
    "$BIN" start > "$3" 2>&1 &
  PIDS+=($!)
  for _ in $(seq 100); do curl -s -m 1 "http://127.0.0.1:$1/ready" | grep -q '"adapter_healthy":true' && return; sleep 0.1; done
  echo "node on $1 did not become ready" >&2; exit 1
}

printf '%-10s %-13s %8s %10s %12s %14s %14s %14s\n' design layout events deliveries "msgs/event" "node-bytes/ev" "redis-bytes/ev" "cpu-us/deliv"
run() { # routing layout channels
  local routing=$1 layout=$2 channels=$3 ports=() urls=() logs=()
  PIDS=()
  for i in 0 1 2; do
    ports[i]=$(free_port); logs[i]="$TMP/$routing-$layout-$i.log"
    start_node "${ports[i]}" "$routing" "${logs[i]}"
    urls[i]="ws://127.0.0.1:${ports[i]}"
  done
  local cpu0=0 out0 pub0
  for p in "${PIDS[@]}"; do cpu0=$((cpu0 + $(cpu_ticks "$p"))); done
  out0=$(redis_out); pub0=$(publishes); pub0=${pub0:-0}
  "$BENCH" fanout --url "$(IFS=,; echo "${urls[*]}")" --subscribers "$SUBS" --channels "$channels" \
    --rate "$RATE" --duration "$DUR" --quiet --json "$TMP/$routing-$layout.json" > "$TMP/$routing-$layout.out" 2>&1 || true
  local cpu1=0 out1 pub1
  for p in "${PIDS[@]}"; do cpu1=$((cpu1 + $(cpu_ticks "$p"))); done
  out1=$(redis_out); pub1=$(publishes); pub1=${pub1:-0}
  for p in "${PIDS[@]}"; do kill -TERM "$p"; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  local msgs bytes
  msgs=$(cat "${logs[@]}" | sed -n 's/.*cluster traffic received.* messages=\([0-9]*\).*/\1/p' | awk '{s+=$1} END {print s+0}')
  bytes=$(cat "${logs[@]}" | sed -n 's/.*cluster traffic received.* bytes=\([0-9]*\).*/\1/p' | awk '{s+=$1} END {print s+0}')
  python3 - "$routing" "$layout" "$TMP/$routing-$layout.json" "$msgs" "$bytes" "$((out1 - out0))" "$((cpu1 - cpu0))" "$clk" "$((pub1 - pub0))" <<'EOF'
import json, sys
routing, layout, path, msgs, nbytes, rbytes, ticks, clk, pubs = sys.argv[1:]
try:
    r = json.loads(open(path).read().strip().splitlines()[-1])
except Exception:
    r = {}
events = r.get("events_ok") or r.get("events_published") or 0
delivered = r.get("received") or 0
ev = max(int(events), 1)
print(f"{routing:<10} {layout:<13} {events:>8} {delivered:>10} {int(msgs)/ev:>12.2f} {int(nbytes)/ev:>14.1f} {int(rbytes)/ev:>14.1f} {int(ticks)/int(clk)*1e6/max(int(delivered),1):>14.2f}")
EOF
}
for layout in concentrated spread; do
  channels=30; [ "$layout" = spread ] && channels=31
  for routing in broadcast interest; do run "$routing" "$layout" "$channels"; done
done

# Per-channel cost of routing: one node, CHANNELS channels with one subscriber each, peak Redis
# used_memory and node RSS while they are subscribed, interest against broadcast.
CHANNELS=${ROUTING_CHANNELS:-20000}
echo
printf '%-10s %9s %16s %18s %16s\n' design channels "redis-routes" "redis-bytes/chan" "node-KiB/chan"
cost() { # routing
  local port log; port=$(free_port); log="$TMP/cost-$1.log"; PIDS=()
  start_node "$port" "$1" "$log"
  local pid=${PIDS[0]} mem0 rss0
  mem0=$(redis-cli -p "$RP" INFO memory | sed -n 's/^used_memory:\([0-9]*\).*/\1/p' | tr -d '\r')
  rss0=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
  "$BENCH" fanout --url "ws://127.0.0.1:$port" --subscribers "$CHANNELS" --channels "$CHANNELS" --rate 1 --duration 3 --quiet > "$TMP/cost-$1.out" 2>&1 &
  local bp=$! peak_mem=0 peak_rss=0 peak_routes=0 m r n
  while kill -0 "$bp" 2>/dev/null; do
    m=$(redis-cli -p "$RP" INFO memory | sed -n 's/^used_memory:\([0-9]*\).*/\1/p' | tr -d '\r')
    r=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
    n=$(redis-cli -p "$RP" PUBSUB NUMPAT >/dev/null; redis-cli -p "$RP" PUBSUB CHANNELS "bench-$1#ch#*" | wc -l)
    [ "$m" -gt "$peak_mem" ] && peak_mem=$m
    [ "$r" -gt "$peak_rss" ] && peak_rss=$r
    [ "$n" -gt "$peak_routes" ] && peak_routes=$n
    sleep 0.3
  done
  kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
  python3 -c "import sys; d,c,n,m,r=sys.argv[1],int(sys.argv[2]),int(sys.argv[3]),int(sys.argv[4]),int(sys.argv[5]); print(f'{d:<10} {c:>9} {n:>16} {m/c:>18.1f} {r/c:>16.3f}')" \
    "$1" "$CHANNELS" "$peak_routes" "$((peak_mem - mem0))" "$((peak_rss - rss0))"
}
cost broadcast
cost interest
