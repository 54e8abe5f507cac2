#!/usr/bin/env bash
# Socket.IO and Redis-ingestion figures, side by side in one run: Resonance (Pusher clients,
# Socket.IO EIO4 and EIO3 clients) and laravel-echo-server 1.6.3 (EIO3, its only protocol),
# on the same load, the events published as Laravel's redis broadcaster does (PUBLISH) or
# through the HTTP APIs. A redis-server is started here on a free port.
#
# usage: bench/socketio.sh [--no-les] [--quick]
#   --no-les   Resonance only
#   --quick    small loads, a few seconds each (a smoke run of the script itself)
# environment: IDLE_CONNS (5000), SUBS (2000), DURATION (15), RESONANCE_BIN, BENCH_BIN,
#              LES_DIR (where laravel-echo-server 1.6.3 is installed with npm; default
#              target/les, installed there on first use — never committed)
# Needs target/release/resonance and target/release/resonance-bench (cargo build --release
# --workspace), redis-server, node + npm.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
WITH_LES=1 QUICK=0
for arg in "$@"; do
  case "$arg" in
    --no-les) WITH_LES=0 ;;
    --quick) QUICK=1 ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) echo "unknown argument: $arg" >&2; exit 2 ;;
  esac
done
BIN=${RESONANCE_BIN:-target/release/resonance}
BENCH=${BENCH_BIN:-target/release/resonance-bench}
LES_DIR=${LES_DIR:-$ROOT/target/les}
IDLE=${IDLE_CONNS:-5000}; SUBS=${SUBS:-2000}; DUR=${DURATION:-15}
[ "$QUICK" = 1 ] && { IDLE=300; SUBS=200; DUR=3; }
RATE20=$((20000 * 10 / SUBS))   # events/s on 10 channels for 20k deliveries/s
APP_ID=a1b2c3d4e5f60718 API_KEY=0123456789abcdef0123456789abcdef PREFIX=laravel_database_
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p bench/results
OUT=bench/results/socketio-$STAMP.jsonl
LOGDIR=$(mktemp -d "${TMPDIR:-/tmp}/resonance-sio-bench.XXXXXX")
: > "$OUT"

RP=$(free_port)
redis-server --port "$RP" --save '' --appendonly no --bind 127.0.0.1 > "$LOGDIR/redis.log" 2>&1 &
RPID=$!
SPID=""
cleanup() { [ -n "$SPID" ] && kill "$SPID" 2>/dev/null; kill "$RPID" 2>/dev/null || true; }
trap cleanup EXIT
for _ in $(seq 50); do redis-cli -p "$RP" ping > /dev/null 2>&1 && break; sleep 0.1; done

wait_up() { for _ in $(seq 100); do curl -s -m 1 -o /dev/null "http://127.0.0.1:$1/" && return 0; sleep 0.1; done; echo "server on $1 not up" >&2; tail "$LOGDIR"/*.log >&2; exit 1; }
stop() { [ -n "$SPID" ] || return 0; kill "$SPID" 2>/dev/null || true; for _ in $(seq 50); do kill -0 "$SPID" 2>/dev/null || break; sleep 0.1; done; kill -9 "$SPID" 2>/dev/null || true; SPID=""; }

start_resonance() { # port
  RESONANCE_HOST=127.0.0.1 RESONANCE_PORT=$1 RESONANCE_APP_ID=$APP_ID RESONANCE_APP_KEY=app-key \
  RESONANCE_APP_SECRET=app-secret RESONANCE_APP_EXTRA_API_KEYS=$API_KEY \
  RESONANCE_REDIS_URL=redis://127.0.0.1:$RP/0 RESONANCE_REDIS_PREFIX=$PREFIX RESONANCE_LOG=warn \
    "$BIN" start > "$LOGDIR/resonance-$1.log" 2>&1 &
  SPID=$!
  wait_up "$1"
}

start_les() { # port
  if [ ! -f "$LES_DIR/node_modules/laravel-echo-server/bin/server.js" ]; then
    mkdir -p "$LES_DIR"
    (cd "$LES_DIR" && { [ -f package.json ] || npm init -y > /dev/null; } && npm install --no-save laravel-echo-server@1.6.3 > /dev/null)
  fi
  local dir="$LOGDIR/les-$1"
  mkdir -p "$dir"
  cat > "$dir/laravel-echo-server.json" <<EOF
{"authHost":"http://127.0.0.1:1","authEndpoint":"/broadcasting/auth",
 "clients":[{"appId":"$APP_ID","key":"$API_KEY"}],"database":"redis",
 "databaseConfig":{"redis":{"host":"127.0.0.1","port":"$RP","keyPrefix":"$PREFIX"}},
 "devMode":false,"host":"127.0.0.1","port":"$1","protocol":"http","socketio":{},
 "subscribers":{"http":true,"redis":true},
 "apiOriginAllow":{"allowCors":false,"allowOrigin":"","allowMethods":"","allowHeaders":""}}
EOF
  node "$LES_DIR/node_modules/laravel-echo-server/bin/server.js" start --dir="$dir" > "$LOGDIR/les-$1.log" 2>&1 &
  SPID=$!
  wait_up "$1"
}

run() { # label port tag proto publish mode args...
  local label=$1 port=$2 tag=$3 proto=$4 publish=$5; shift 5
  echo "== $label $tag ($proto, $publish)" >&2
  "$BENCH" "$@" --url "ws://127.0.0.1:$port" --app-id "$APP_ID" --key app-key --secret app-secret \
    --echo-key "$API_KEY" --redis "redis://127.0.0.1:$RP" --redis-prefix "$PREFIX" \
    --proto "$proto" --publish "$publish" --pid "$SPID" --label "$label" --tag "$tag" \
    --json "$OUT" --quiet 2>&1 >/dev/null | grep -E '^(==|[0-9]+/|received|latency|server cpu|rss|connected)' || true
  sleep 2
}

HI_RATES=(200 400)
[ "$QUICK" = 1 ] && HI_RATES=(100)

# Idle memory: a fresh server per wire, so no run inherits another's heap.
for proto in pusher eio4 eio3; do
  P=$(free_port); start_resonance "$P"
  run resonance "$P" "idle-$proto" "$proto" api idle --connections "$IDLE" --channels 100 --hold 2
  stop
done
if [ "$WITH_LES" = 1 ]; then
  P=$(free_port); start_les "$P"
  run les "$P" idle-eio3 eio3 echo-api idle --connections "$IDLE" --channels 100 --hold 2
  stop
fi

# Fan-out at 20k deliveries/s ($SUBS subscribers over 10 channels), then higher rates.
fan() { # label port proto publish tag-suffix
  run "$1" "$2" "fanout-20k-$3-$4" "$3" "$4" fanout --subscribers "$SUBS" --channels 10 --rate "$RATE20" --duration "$DUR"
  for r in "${HI_RATES[@]}"; do
    run "$1" "$2" "fanout-$((r * SUBS / 10 / 1000))k-$3-$4" "$3" "$4" fanout --subscribers "$SUBS" --channels 10 --rate "$r" --duration 8
  done
}
P=$(free_port); start_resonance "$P"
fan resonance "$P" pusher api
fan resonance "$P" pusher redis
fan resonance "$P" eio4 redis
fan resonance "$P" eio3 redis
run resonance "$P" fanout-20k-eio3-echo-api eio3 echo-api fanout --subscribers "$SUBS" --channels 10 --rate "$RATE20" --duration "$DUR"
# Redis ingestion: events/s through PUBLISH with 100 and with 1,000 subscribers per channel
# (1,000 subscribers in all; 20k and 50k deliveries/s).
ingest() { # label port proto
  for r in 200 500; do
    run "$1" "$2" "ingest-100per-${r}ev-$3" "$3" redis fanout --subscribers 1000 --channels 10 --rate "$r" --duration 8
  done
  for r in 20 50; do
    run "$1" "$2" "ingest-1000per-${r}ev-$3" "$3" redis fanout --subscribers 1000 --channels 1 --rate "$r" --duration 8
  done
}
ingest resonance "$P" pusher
ingest resonance "$P" eio4
stop
if [ "$WITH_LES" = 1 ]; then
  P=$(free_port); start_les "$P"
  fan les "$P" eio3 redis
  run les "$P" fanout-20k-eio3-echo-api eio3 echo-api fanout --subscribers "$SUBS" --channels 10 --rate "$RATE20" --duration "$DUR"
  ingest les "$P" eio3
  stop
fi

echo "results: $OUT" >&2
python3 - "$OUT" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
print("| server | run | per idle conn KiB | deliveries/s | p50 ms | p99 ms | CPU s / M | loss |")
print("|---|---|---|---|---|---|---|---|")
for r in rows:
    lat = r.get("latency") or {}
    ms = lambda k: "" if lat.get(k) is None else f"{lat[k]:.2f}"
    print(f"| {r.get('label')} | {r.get('tag')} | {r.get('rss_per_conn_kib', '')} | "
          f"{r.get('deliveries_per_sec', '')} | {ms('p50_ms')} | {ms('p99_ms')} | "
          f"{r.get('server_cpu_s_per_million', '')} | {r.get('loss', '')} |")
EOF
