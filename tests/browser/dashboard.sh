#!/usr/bin/env bash
# The live dashboard in headless Chromium against the release binary
# (RESONANCE_BIN, default target/release/resonance): login, a pusher-js
# client shown live, the test-event form reaching it. Screenshots go to
# $SCREENSHOT_DIR (default target/browser). Skips (exit 0) when the system
# chromium is not installed (Debian: apt-get install chromium).
set -uo pipefail
cd "$(dirname "$0")/../.."
CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"
if [ ! -x "$CHROMIUM" ]; then
  echo "browser test skipped: $CHROMIUM not installed (apt-get install chromium)"
  exit 0
fi
command -v npm >/dev/null || { echo "browser test skipped: npm not installed"; exit 0; }
export RESONANCE_BIN="${RESONANCE_BIN:-$PWD/target/release/resonance}"
[ -x "$RESONANCE_BIN" ] || cargo build --release --bin resonance -q || { echo "dashboard test: build failed"; exit 1; }
if [ ! -d tests/browser/node_modules/pusher-js ] || [ tests/browser/package-lock.json -nt tests/browser/node_modules ]; then
  (cd tests/browser && npm ci --no-audit --no-fund) || { echo "dashboard test: npm ci failed"; exit 1; }
fi
export CHROMIUM
cd tests/browser && npm run -s test:dashboard
