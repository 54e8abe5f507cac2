#!/usr/bin/env bash
# Runs the whole test suite: Rust unit/integration tests, the pusher-js /
# laravel-echo suite, the Laravel bridge suite (Socket.IO, Redis), the
# cluster suite (several nodes over a redis-server it starts; again over a 3-master Redis
# Cluster and over NATS), the Python
# SDK suite, Autobahn conformance, the browser test of the chat example,
# and a short load-tool smoke run. Installs what the suites need on first use (npm ci, a Python
# venv under target/). Prints "tests: N passed, M failed" last.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
LOG=$(mktemp -d)
pass=0; fail=0
add() { pass=$((pass + ${1:-0})); fail=$((fail + ${2:-0})); }
step() { printf '\n== %s ==\n' "$*"; }

step "build (release)"
cargo build --release --workspace --bins --examples || { echo "build failed"; echo "tests: 0 passed, 1 failed"; exit 1; }
export RESONANCE_BIN="$ROOT/target/release/resonance"

step "cargo test"
# The dev profile: some twenty integration-test binaries each take minutes
# to link with the release profile's LTO, seconds without it. (The Node,
# Python and Autobahn suites below run the release binary.)
cargo test --workspace 2>&1 | tee "$LOG/cargo.txt"
rc=$?
p=$(grep -Eo '[0-9]+ passed' "$LOG/cargo.txt" | awk '{s+=$1} END {print s+0}')
f=$(grep -Eo '[0-9]+ failed' "$LOG/cargo.txt" | awk '{s+=$1} END {print s+0}')
[ "$rc" -ne 0 ] && [ "$f" -eq 0 ] && f=1
add "$p" "$f"

node_suite() {
  local dir=$1 name=$2 script=${3:-test}
  step "Node suite: $name"
  if [ ! -d "$dir/node_modules" ] || [ "$dir/package-lock.json" -nt "$dir/node_modules" ]; then
    (cd "$dir" && npm ci --no-audit --no-fund) || { add 0 1; return; }
  fi
  (cd "$dir" && npm run "$script" 2>&1) | tee "$LOG/node.txt"
  local p f
  p=$(grep -E '^# pass [0-9]+' "$LOG/node.txt" | awk '{print $3}' | tail -1)
  f=$(grep -E '^# fail [0-9]+' "$LOG/node.txt" | awk '{print $3}' | tail -1)
  [ -z "$p$f" ] && f=1
  add "${p:-0}" "${f:-0}"
}
node_suite tests/js "pusher-js, laravel-echo (Pusher protocol)"
node_suite tests/laravel "Laravel bridge (Redis, auth endpoint, Socket.IO 2.x/4.x, laravel-echo-server)"
node_suite tests/cluster "cluster (several nodes over Redis)"
node_suite tests/handlers "handler routes: the PHP chat example (ws clients, headless Chromium)"
node_suite tests/laravel-app "real Laravel 8.83 app (php -S): Echo socket.io 2.x/4.x and pusher/reverb, channel callbacks, notifications, toOthers(), the Laravel package"

step "Laravel package (PHPUnit, inside the real Laravel app)"
laravel/tests/run.sh 2>&1 | tee "$LOG/phpunit.txt"
add "$(grep -E '^# pass' "$LOG/phpunit.txt" | awk '{print $3}')" "$(grep -E '^# fail' "$LOG/phpunit.txt" | awk '{print $3}')"
node_suite tests/cluster "cluster, single-channel routing (subset)" test:broadcast
node_suite tests/cluster "cluster over Redis Cluster (3 masters, sharded pub/sub)" test:redis-cluster
node_suite tests/cluster "cluster over NATS (core pub/sub, JetStream KV)" test:nats

step "Python suite (pusher SDK)"
VENV="$ROOT/target/pyvenv"
if [ ! -x "$VENV/bin/pytest" ] || [ tests/py/requirements.txt -nt "$VENV/bin/pytest" ]; then
  python3 -m venv "$VENV" && "$VENV/bin/pip" install -q -r tests/py/requirements.txt && touch "$VENV/bin/pytest" || { add 0 1; }
fi
"$VENV/bin/pytest" -q tests/py 2>&1 | tee "$LOG/py.txt"
p=$(grep -Eo '[0-9]+ passed' "$LOG/py.txt" | tail -1 | awk '{print $1}')
f=$(grep -Eo '[0-9]+ (failed|error|errors)' "$LOG/py.txt" | awk '{s+=$1} END {print s+0}')
[ -z "$p" ] && [ "$f" -eq 0 ] && f=1
add "${p:-0}" "$f"

step "RFC 6455 conformance (Autobahn, no deflate): echo example"
if tests/autobahn.sh 2>&1 | tee "$LOG/ab1.txt"; then add 1 0; else add 0 1; fi
step "RFC 6455 conformance (Autobahn, no deflate): custom route on resonance start"
if tests/autobahn.sh --main 2>&1 | tee "$LOG/ab2.txt"; then add 1 0; else add 0 1; fi

step "browser: chat example in headless Chromium"
tests/browser/run.sh > "$LOG/browser.txt" 2>&1
brc=$?
cat "$LOG/browser.txt"
if grep -q "browser test skipped" "$LOG/browser.txt"; then :; elif [ "$brc" -eq 0 ]; then add 1 0; else add 0 1; fi

step "browser: live dashboard in headless Chromium"
tests/browser/dashboard.sh > "$LOG/dashboard.txt" 2>&1
drc=$?
cat "$LOG/dashboard.txt"
if grep -q "browser test skipped" "$LOG/dashboard.txt"; then :; elif [ "$drc" -eq 0 ]; then add 1 0; else add 0 1; fi

if [ -x bench/run.sh ]; then
  step "load tool smoke run"
  if bench/run.sh --smoke 2>&1 | tee "$LOG/bench.txt"; then add 1 0; else add 0 1; fi
fi

rm -rf "$LOG"
echo
echo "tests: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
