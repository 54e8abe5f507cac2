#!/usr/bin/env bash
# The PHP chat example (examples/handlers/app.php) on PHP's built-in server,
# Resonance (release build) in front of it with the example's [[routes]],
# both on free ports; then chat.test.js drives it with real WebSocket
# clients and headless Chromium. Needs php-cli (Debian: apt-get install
# php-cli); the Chromium test skips when /usr/bin/chromium is missing.
set -uo pipefail
cd "$(dirname "$0")"
HERE=$PWD
ROOT=$(cd ../.. && pwd)
command -v php >/dev/null || { echo "php-cli is not installed (apt-get install php-cli)"; echo "# fail 1"; exit 1; }
BIN="${RESONANCE_BIN:-$ROOT/target/release/resonance}"
if [ ! -x "$BIN" ]; then
  (cd "$ROOT" && cargo build --release -q --bin resonance) || { echo "# fail 1"; exit 1; }
fi
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
PHP_PORT=$(free_port)
WS_PORT=$(free_port)
WORK=$(mktemp -d)
cat > "$WORK/resonance.toml" <<TOML
[server]
host = "127.0.0.1"
port = $WS_PORT
shutdown_grace = 3

[[apps]]
id = "100000"
key = "resonance-key"
secret = "resonance-secret"

[[routes]]
path = "/chat-rooms/{id}"
handler = "http://127.0.0.1:$PHP_PORT/socket/chat"
rooms = ["chat-rooms.{id}"]
timeout = 5
TOML
export RESONANCE_SECRET=resonance-secret RESONANCE_WS="ws://127.0.0.1:$WS_PORT" RESONANCE_API="http://127.0.0.1:$WS_PORT"
PHP_CLI_SERVER_WORKERS=4 php -S "127.0.0.1:$PHP_PORT" "$ROOT/examples/handlers/app.php" > "$WORK/php.log" 2>&1 &
PHP_PID=$!
"$BIN" start --config "$WORK/resonance.toml" > "$WORK/resonance.log" 2>&1 &
RES_PID=$!
cleanup() {
  kill "$RES_PID" "$PHP_PID" 2>/dev/null
  wait "$RES_PID" "$PHP_PID" 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT
for port in "$PHP_PORT" "$WS_PORT"; do
  for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    sleep 0.05
  done
done
export APP_URL="http://127.0.0.1:$PHP_PORT" WS_URL="ws://127.0.0.1:$WS_PORT"
node --test --test-concurrency=1 --test-timeout=60000 chat.test.js
rc=$?
if [ "$rc" -ne 0 ]; then
  echo "--- resonance log"; tail -30 "$WORK/resonance.log"
  echo "--- php log"; tail -30 "$WORK/php.log"
fi
exit $rc
