#!/usr/bin/env bash
# Interest-based routing against the single-channel (broadcast) design, side by side in one run,
# over one cluster engine: 3 nodes over a broker started here, the load tool's subscribers
# round-robin over the nodes, events through the first node's HTTP API.
#   (a) concentrated: 30 channels, so subscriber i (channel i%30, node i%3) puts each channel on
#       exactly one node;
#   (b) spread: 31 channels, so every channel has subscribers on every node.
# For each design and layout: events published and delivered, messages and payload bytes the
# nodes received from the broker (their shutdown log line "cluster traffic received from ..."),
# the broker's own output bytes (Redis: INFO stats total_net_output_bytes summed over its
# servers; NATS: /varz out_bytes), server CPU (user+sys of the 3 nodes, /proc) and broker CPU
# (its processes) per delivery.
#
# usage: bench/routing.sh [--engine redis|redis-cluster|nats] [SUBSCRIBERS] [RATE] [DURATION]
#        (defaults redis 600 200 10; ROUTING_CHANNELS=0 skips the per-channel cost table)
#   redis:         one redis-server (RESONANCE_ADAPTER=redis)
#   redis-cluster: 3 masters in cluster mode (redis-cli --cluster create), sharded pub/sub
#   nats:          nats-server -js (core pub/sub, JetStream KV), plus a redis-server for the
#                  Laravel ingestion only
# Needs target/release/resonance and target/release/resonance-bench (bench/run.sh builds them).
set -euo pipefail
cd "$(dirname "$0")/.."
ENGINE=redis
if [ "${1:-}" = "--engine" ]; then ENGINE=${2:?--engine needs a value}; shift 2; fi
case "$ENGINE" in redis|redis-cluster|nats) ;; *) echo "unknown engine $ENGINE (redis | redis-cluster | nats)" >&2; exit 2 ;; esac
SUBS=${1:-600}; RATE=${2:-200}; DUR=${3:-10}
BIN=${RESONANCE_BIN:-target/release/resonance}
BENCH=${BENCH_BIN:-target/release/resonance-bench}
NATS_SERVER=${NATS_SERVER:-$(command -v nats-server || echo /usr/sbin/nats-server)}
TMP=$(mktemp -d)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PIDS=()   # the nodes of the current run
BPIDS=()  # the broker's processes (and the Laravel redis-server for nats)
cleanup() { for p in "${PIDS[@]}" "${BPIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$TMP"; }
trap cleanup EXIT
clk=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
sum_cpu() { local s=0 p; for p in "$@"; do s=$((s + $(cpu_ticks "$p"))); done; echo "$s"; }
rinfo() { # port section field
  redis-cli -p "$1" INFO "$2" | sed -n "s/^$3:\([0-9]*\).*/\1/p" | tr -d '\r'
}
wait_pong() { for _ in $(seq 50); do redis-cli -p "$1" PING 2>/dev/null | grep -q PONG && return; sleep 0.1; done; echo "redis on $1 did not start" >&2; exit 1; }
start_redis() { # port [args...]: a redis-server without persistence
  local port=$1; shift
  redis-server --port "$port" --save '' --appendonly no --bind 127.0.0.1 --dir "$TMP" --daemonize no "$@" > /dev/null 2>&1 &
  BPIDS+=($!)
  wait_pong "$port"
}

RPORTS=()   # the Redis servers whose output bytes count as the broker's
case "$ENGINE" in
  redis)
    RP=$(free_port); start_redis "$RP"; RPORTS=("$RP")
    NODE_ENV=(RESONANCE_ADAPTER=redis "RESONANCE_REDIS_URL=redis://127.0.0.1:$RP/0")
    ;;
  redis-cluster)
    seeds=()
    for i in 0 1 2; do
      p=$(free_port); b=$(free_port)
      start_redis "$p" --cluster-enabled yes --cluster-config-file "$TMP/nodes-$p.conf" --cluster-port "$b"
      RPORTS+=("$p"); seeds+=("redis://127.0.0.1:$p")
    done
    redis-cli --cluster create $(printf '127.0.0.1:%s ' "${RPORTS[@]}") --cluster-replicas 0 --cluster-yes > "$TMP/create.log" 2>&1 \
      || { cat "$TMP/create.log" >&2; exit 1; }
    for p in "${RPORTS[@]}"; do
      for _ in $(seq 100); do redis-cli -p "$p" CLUSTER INFO | grep -q 'cluster_state:ok' && break; sleep 0.1; done
    done
    NODE_ENV=(RESONANCE_ADAPTER=redis-cluster "RESONANCE_REDIS_URL=$(IFS=,; echo "${seeds[*]}")")
    ;;
  nats)
    NP=$(free_port); NM=$(free_port)
    "$NATS_SERVER" -a 127.0.0.1 -p "$NP" -m "$NM" -js -sd "$TMP/nats" > "$TMP/nats.log" 2>&1 &
    BPIDS+=($!)
    for _ in $(seq 100); do curl -sf -m 1 "http://127.0.0.1:$NM/healthz" > /dev/null && break; sleep 0.1; done
    RP=$(free_port); start_redis "$RP"   # the Laravel ingestion only
    NODE_ENV=(RESONANCE_ADAPTER=nats "RESONANCE_NATS_URL=nats://127.0.0.1:$NP" "RESONANCE_REDIS_URL=redis://127.0.0.1:$RP/0")
    ;;
esac
BROKER_PIDS=("${BPIDS[@]}")
[ "$ENGINE" = nats ] && BROKER_PIDS=("${BPIDS[0]}") # not the Laravel redis-server

broker_out() { # the broker's output bytes so far
  if [ "$ENGINE" = nats ]; then
    curl -s "http://127.0.0.1:$NM/varz" | python3 -c 'import json,sys; print(json.load(sys.stdin)["out_bytes"])'
  else
    local s=0 p; for p in "${RPORTS[@]}"; do s=$((s + $(rinfo "$p" stats total_net_output_bytes))); done; echo "$s"
  fi
}

start_node() { # port routing log
  env "${NODE_ENV[@]}" RESONANCE_PORT=$1 RESONANCE_APP_ID=12345 RESONANCE_APP_KEY=app-key RESONANCE_APP_SECRET=app-secret \
    RESONANCE_LOG=info RESONANCE_CLUSTER_ROUTING=$2 RESONANCE_CLUSTER_PREFIX=bench-$2 \
    RESONANCE_REDIS_PREFIX=${INGEST_PREFIX-laravel_database_} NO_COLOR=1 \
    "$BIN" start > "$3" 2>&1 &
  PIDS+=($!)
  for _ in $(seq 100); do curl -s -m 1 "http://127.0.0.1:$1/ready" | grep -q '"adapter_healthy":true' && return; sleep 0.1; done
  echo "node on $1 did not become ready ($ENGINE):" >&2; tail -20 "$3" >&2; exit 1
}

echo "engine: $ENGINE; $SUBS subscribers, $RATE events/s for $DUR s"
printf '%-13s %-10s %-13s %7s %9s %10s %13s %14s %13s %15s\n' engine design layout events deliveries "msgs/event" "node-bytes/ev" "broker-bytes/ev" "cpu-us/deliv" "broker-cpu-us/d"
run() { # routing layout channels
  local routing=$1 layout=$2 channels=$3 ports=() urls=() logs=()
  PIDS=()
  for i in 0 1 2; do
    ports[i]=$(free_port); logs[i]="$TMP/$routing-$layout-$i.log"
    start_node "${ports[i]}" "$routing" "${logs[i]}"
    urls[i]="ws://127.0.0.1:${ports[i]}"
  done
  local cpu0 bcpu0 out0
  cpu0=$(sum_cpu "${PIDS[@]}"); bcpu0=$(sum_cpu "${BROKER_PIDS[@]}"); out0=$(broker_out)
  "$BENCH" fanout --url "$(IFS=,; echo "${urls[*]}")" --subscribers "$SUBS" --channels "$channels" \
    --rate "$RATE" --duration "$DUR" --quiet --json "$TMP/$routing-$layout.json" > "$TMP/$routing-$layout.out" 2>&1 || true
  local cpu1 bcpu1 out1
  cpu1=$(sum_cpu "${PIDS[@]}"); bcpu1=$(sum_cpu "${BROKER_PIDS[@]}"); out1=$(broker_out)
  for p in "${PIDS[@]}"; do kill -TERM "$p"; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  local msgs bytes
  msgs=$(cat "${logs[@]}" | sed -n 's/.*cluster traffic received from.* messages=\([0-9]*\).*/\1/p' | awk '{s+=$1} END {print s+0}')
  bytes=$(cat "${logs[@]}" | sed -n 's/.*cluster traffic received from.* bytes=\([0-9]*\).*/\1/p' | awk '{s+=$1} END {print s+0}')
  grep -q 'cluster traffic received from' "${logs[@]}" || echo "warning: no 'cluster traffic received from' line in the node logs ($ENGINE)" >&2
  python3 - "$ENGINE" "$routing" "$layout" "$TMP/$routing-$layout.json" "$msgs" "$bytes" "$((out1 - out0))" "$((cpu1 - cpu0))" "$clk" "$((bcpu1 - bcpu0))" <<'EOF'
import json, sys
engine, routing, layout, path, msgs, nbytes, bbytes, ticks, clk, bticks = sys.argv[1:]
try:
    r = json.loads(open(path).read().strip().splitlines()[-1])
except Exception:
    r = {}
events = r.get("events_ok") or r.get("events_published") or 0
delivered = r.get("received") or 0
ev = max(int(events), 1)
d = max(int(delivered), 1)
us = lambda t: int(t) / int(clk) * 1e6 / d
print(f"{engine:<13} {routing:<10} {layout:<13} {events:>7} {delivered:>9} {int(msgs)/ev:>10.2f} {int(nbytes)/ev:>13.1f} {int(bbytes)/ev:>15.1f} {us(ticks):>13.2f} {us(bticks):>15.2f}")
EOF
}
for layout in concentrated spread; do
  channels=30; [ "$layout" = spread ] && channels=31
  for routing in broadcast interest; do run "$routing" "$layout" "$channels"; done
done

# Per-channel cost of routing: one node, CHANNELS channels with one subscriber each, peak broker
# memory and node RSS while they are subscribed, interest against broadcast. Broker memory:
# Redis used_memory (summed over the cluster's masters), NATS the server's RSS.
CHANNELS=${ROUTING_CHANNELS:-20000}
[ "$CHANNELS" -gt 0 ] || exit 0
echo
printf '%-13s %-10s %9s %14s %19s %16s\n' engine design channels "broker-routes" "broker-bytes/chan" "node-KiB/chan"
broker_mem() {
  if [ "$ENGINE" = nats ]; then
    echo $(( $(awk '/VmRSS/ {print $2}' "/proc/${BROKER_PIDS[0]}/status") * 1024 ))
  else
    local s=0 p; for p in "${RPORTS[@]}"; do s=$((s + $(rinfo "$p" memory used_memory))); done; echo "$s"
  fi
}
broker_routes() { # routing: the channel subscriptions the broker holds for the cluster prefix
  case "$ENGINE" in
    redis) redis-cli -p "${RPORTS[0]}" PUBSUB CHANNELS "bench-$1#ch#*" | wc -l ;;
    redis-cluster) local s=0 p; for p in "${RPORTS[@]}"; do s=$((s + $(redis-cli -p "$p" PUBSUB SHARDCHANNELS "*bench-$1*" | wc -l))); done; echo "$s" ;;
    nats) curl -s "http://127.0.0.1:$NM/subsz" | python3 -c 'import json,sys; print(json.load(sys.stdin)["num_subscriptions"])' ;;
  esac
}
cost() { # routing
  local port log; port=$(free_port); log="$TMP/cost-$1.log"; PIDS=()
  start_node "$port" "$1" "$log"
  local pid=${PIDS[0]} mem0 rss0 routes0
  mem0=$(broker_mem); routes0=$(broker_routes "$1")
  rss0=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
  "$BENCH" fanout --url "ws://127.0.0.1:$port" --subscribers "$CHANNELS" --channels "$CHANNELS" --rate 1 --duration 3 --quiet > "$TMP/cost-$1.out" 2>&1 &
  local bp=$! peak_mem=0 peak_rss=0 peak_routes=0 m r n
  while kill -0 "$bp" 2>/dev/null; do
    m=$(broker_mem)
    r=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
    n=$(broker_routes "$1")
    [ "$m" -gt "$peak_mem" ] && peak_mem=$m
    [ "$r" -gt "$peak_rss" ] && peak_rss=$r
    [ "$n" -gt "$peak_routes" ] && peak_routes=$n
    sleep 0.3
  done
  kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
  python3 -c "import sys; e,d,c,n,m,r=sys.argv[1],sys.argv[2],int(sys.argv[3]),int(sys.argv[4]),int(sys.argv[5]),int(sys.argv[6]); print(f'{e:<13} {d:<10} {c:>9} {n:>14} {m/c:>19.1f} {r/c:>16.3f}')" \
    "$ENGINE" "$1" "$CHANNELS" "$((peak_routes - routes0))" "$((peak_mem - mem0))" "$((peak_rss - rss0))"
}
cost broadcast
cost interest
