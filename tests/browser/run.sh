#!/usr/bin/env bash
# The chat example checked as a person would: two pages in headless
# Chromium, one sends, the other shows the message; a screenshot is left at
# $SCREENSHOT (default target/browser/chat.png). Skips (exit 0) when the
# system chromium is not installed (Debian: apt-get install chromium).
set -uo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"
if [ ! -x "$CHROMIUM" ]; then
  echo "browser test skipped: $CHROMIUM not installed (apt-get install chromium)"
  exit 0
fi
command -v npm >/dev/null || { echo "browser test skipped: npm not installed"; exit 0; }
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
cargo build --release --example chat -q || { echo "browser test: build failed"; exit 1; }
if [ ! -d tests/browser/node_modules ] || [ tests/browser/package-lock.json -nt tests/browser/node_modules ]; then
  (cd tests/browser && npm ci --no-audit --no-fund) || { echo "browser test: npm ci failed"; exit 1; }
fi
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$TARGET/release/examples/chat" "127.0.0.1:$PORT" > /dev/null &
PID=$!
trap 'kill $PID 2>/dev/null; wait $PID 2>/dev/null' EXIT
for _ in $(seq 50); do
  (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
  sleep 0.1
done
mkdir -p "$TARGET/browser"
export CHAT_URL="http://127.0.0.1:$PORT" CHROMIUM
export SCREENSHOT="${SCREENSHOT:-$TARGET/browser/chat.png}"
cd tests/browser && npm test
