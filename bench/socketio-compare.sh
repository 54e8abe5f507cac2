#!/usr/bin/env bash
# Before/after figures for the Socket.IO path, side by side in one run: two Resonance
# binaries (BEFORE_BIN, AFTER_BIN) with Pusher, EIO4 and EIO3 clients, and
# laravel-echo-server 1.6.3 (EIO3) on the same load, published as Laravel's redis
# broadcaster does (PUBLISH). Idle runs alternate the binaries, each on a fresh server.
#
# usage: BEFORE_BIN=path AFTER_BIN=path bench/socketio-compare.sh [--no-les] [--quick] [--high]
#   --no-les   Resonance only
#   --quick    small loads, a few seconds each (a smoke run of the script itself)
#   --high     also offer 40k and 80k deliveries/s (AFTER_BIN and laravel-echo-server)
# environment: IDLE_CONNS (5000), SUBS (2000), DURATION (15), BENCH_BIN, LES_DIR (see
#              bench/socketio.sh). Needs redis-server, node + npm for laravel-echo-server.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
WITH_LES=1 QUICK=0 HIGH=0
for arg in "$@"; do
  case "$arg" in
    --no-les) WITH_LES=0 ;;
    --quick) QUICK=1 ;;
    --high) HIGH=1 ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "unknown argument: $arg" >&2; exit 2 ;;
  esac
done
BEFORE=${BEFORE_BIN:?set BEFORE_BIN to the binary before the change}
AFTER=${AFTER_BIN:-target/release/resonance}
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
OUT=bench/results/socketio-compare-$STAMP.jsonl
LOGDIR=$(mktemp -d "${TMPDIR:-/tmp}/resonance-sio-compare.XXXXXX")
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

start_resonance() { # binary port
  RESONANCE_HOST=127.0.0.1 RESONANCE_PORT=$2 RESONANCE_APP_ID=$APP_ID RESONANCE_APP_KEY=app-key \
  RESONANCE_APP_SECRET=app-secret RESONANCE_APP_EXTRA_API_KEYS=$API_KEY \
  RESONANCE_REDIS_URL=redis://127.0.0.1:$RP/0 RESONANCE_REDIS_PREFIX=$PREFIX RESONANCE_LOG=warn \
    "$1" start > "$LOGDIR/resonance-$2.log" 2>&1 &
  SPID=$!
  wait_up "$2"
}

start_les() { # port
  if [ ! -f "$LES_DIR/node_modules/laravel-echo-server/bin/server.js" ]; then
    mkdir -p "$LES_DIR"
    (cd "$LES_DIR" && { [ -f package.json ] || npm init -y > /dev/null; } && npm install --no-save laravel-echo-server@1.6.3 > /dev/null)
  fi
  local dir="$LOGDIR/les-$1"
  mkdir -p "$dir"
  cat > "$dir/laravel-echo-server.json" <<JSON
{"authHost":"http://127.0.0.1:1","authEndpoint":"/broadcasting/auth",
 "clients":[{"appId":"$APP_ID","key":"$API_KEY"}],"database":"redis",
 "databaseConfig":{"redis":{"host":"127.0.0.1","port":"$RP","keyPrefix":"$PREFIX"}},
 "devMode":false,"host":"127.0.0.1","port":"$1","protocol":"http","socketio":{},
 "subscribers":{"http":true,"redis":true},
 "apiOriginAllow":{"allowCors":false,"allowOrigin":"","allowMethods":"","allowHeaders":""}}
JSON
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

# Idle memory: a fresh server per run, the two binaries alternating.
for proto in pusher eio4 eio3; do
  for which in before after; do
    bin=$BEFORE; [ "$which" = after ] && bin=$AFTER
    P=$(free_port); start_resonance "$bin" "$P"
    run "$which" "$P" "idle-$proto" "$proto" api idle --connections "$IDLE" --channels 100 --hold 2
    stop
  done
done
if [ "$WITH_LES" = 1 ]; then
  P=$(free_port); start_les "$P"
  run les "$P" idle-eio3 eio3 echo-api idle --connections "$IDLE" --channels 100 --hold 2
  stop
fi

# Fan-out at 20k deliveries/s ($SUBS subscribers over 10 channels), Redis PUBLISH.
fan20() { # label port proto
  run "$1" "$2" "fanout-20k-$3-redis" "$3" redis fanout --subscribers "$SUBS" --channels 10 --rate "$RATE20" --duration "$DUR"
}
high() { # label port proto
  for r in 200 400; do   # events/s: 40k and 80k deliveries/s with 2,000 subscribers
    run "$1" "$2" "fanout-$((r * SUBS / 10 / 1000))k-$3-redis" "$3" redis fanout --subscribers "$SUBS" --channels 10 --rate "$r" --duration 8
  done
}
for which in before after; do
  bin=$BEFORE; [ "$which" = after ] && bin=$AFTER
  P=$(free_port); start_resonance "$bin" "$P"
  for proto in pusher eio4 eio3; do fan20 "$which" "$P" "$proto"; done
  if [ "$HIGH" = 1 ] && [ "$which" = after ]; then
    for proto in pusher eio4 eio3; do high after "$P" "$proto"; done
  fi
  stop
done
if [ "$WITH_LES" = 1 ]; then
  P=$(free_port); start_les "$P"
  fan20 les "$P" eio3
  [ "$HIGH" = 1 ] && high les "$P" eio3
  stop
fi

echo "results: $OUT" >&2
python3 - "$OUT" <<'PY'
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
PY
