#!/usr/bin/env bash
# Handler routes: the latency a handler round trip adds, and the handler
# calls per second one node sustains. One Resonance (release build) with a
# built-in echo route (the baseline: same socket path, no handler) and two
# [[routes]] whose handler echoes through the app: a Node http server and
# PHP's built-in server (4 workers), all on this machine, in one run.
#   bench/handlers.sh            # prints a markdown table
# Needs node, php-cli, and tests/handlers/node_modules (npm ci there).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BIN="${RESONANCE_BIN:-$ROOT/target/release/resonance}"
[ -x "$BIN" ] || cargo build --release -q --bin resonance
[ -d tests/handlers/node_modules ] || (cd tests/handlers && npm ci --no-audit --no-fund)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
WS=$(free_port); NODE_H=$(free_port); PHP_H=$(free_port)
SECRET=bench-secret-123
WORK=$(mktemp -d)
cat > "$WORK/r.toml" <<TOML
[server]
host = "127.0.0.1"
port = $WS
echo_path = "/echo"
log = "warn"
[[apps]]
id = "1"
key = "bench-key"
secret = "$SECRET"
[[routes]]
path = "/node"
handler = "http://127.0.0.1:$NODE_H/"
events = ["message"]
[[routes]]
path = "/php"
handler = "http://127.0.0.1:$PHP_H/"
events = ["message"]
TOML
node bench/handlers/handler.mjs "$NODE_H" "$SECRET" > /dev/null &
P1=$!
RESONANCE_SECRET=$SECRET PHP_CLI_SERVER_WORKERS=4 php -S "127.0.0.1:$PHP_H" bench/handlers/handler.php > /dev/null 2>&1 &
P2=$!
"$BIN" start --config "$WORK/r.toml" > "$WORK/r.log" 2>&1 &
P3=$!
trap 'kill $P1 $P2 $P3 2>/dev/null; wait $P1 $P2 $P3 2>/dev/null; rm -rf "$WORK"' EXIT
for port in $WS $NODE_H $PHP_H; do
  for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.05; done
done
C="node bench/handlers/client.mjs"
U="ws://127.0.0.1:$WS"
echo=$($C latency "$U/echo" 3000)
node_l=$($C latency "$U/node" 3000)
php_l=$($C latency "$U/php" 1000)
cpu0=$(awk '{print $14+$15}' /proc/$P3/stat)
node_t=$($C throughput "$U/node" 64 5)
cpu1=$(awk '{print $14+$15}' /proc/$P3/stat)
php_t=$($C throughput "$U/php" 64 5)
echo_t=$($C throughput "$U/echo" 64 5)
for line in "$echo" "$node_l" "$php_l" "$node_t" "$php_t" "$echo_t"; do echo "$line"; done
python3 - "$echo" "$node_l" "$php_l" "$node_t" "$php_t" "$echo_t" "$cpu0" "$cpu1" "$(getconf CLK_TCK)" <<'PY'
import json, sys
e, n, p, nt, pt, et = (json.loads(a) for a in sys.argv[1:7])
cpu = (int(sys.argv[8]) - int(sys.argv[7])) / int(sys.argv[9])
print()
print("| route | round trip p50 | p99 | added vs echo (p50 / p99) | round trips/s, 64 connections |")
print("|---|---|---|---|---|")
print(f"| built-in echo (no handler) | {e['p50_ms']} ms | {e['p99_ms']} ms | — | {et['per_second']:,} |")
for name, l, t in (("Node handler", n, nt), ("PHP `php -S` (4 workers)", p, pt)):
    print(f"| {name} | {l['p50_ms']} ms | {l['p99_ms']} ms | +{l['p50_ms']-e['p50_ms']:.3f} / +{l['p99_ms']-e['p99_ms']:.3f} ms | {t['per_second']:,} |")
print()
print(f"Resonance CPU during the Node throughput run: {cpu:.2f} s for {nt['round_trips']:,} handler calls ({cpu*1e6/max(nt['round_trips'],1):.0f} µs per call).")
PY
