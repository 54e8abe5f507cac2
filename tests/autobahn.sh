#!/usr/bin/env bash
# RFC 6455 conformance: builds the release examples, starts the `echo`
# example on a free port, runs the Autobahn cases without permessage-deflate
# (tokio-websockets does not implement it) through shared/autobahn/check.sh,
# and exits non-zero when a case failed.
#
# usage: tests/autobahn.sh [--main]   (--main: check `resonance start` with
#                                      RESONANCE_ECHO_PATH=/echo instead)
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
CHECK="${AUTOBAHN_CHECK:-$ROOT/../shared/autobahn/check.sh}"
[ -x "$CHECK" ] || CHECK=/work/shared/autobahn/check.sh
[ -x "$CHECK" ] || { echo "autobahn: check.sh not found; set AUTOBAHN_CHECK"; exit 2; }
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"

cargo build --release --examples --bins -q || { echo "autobahn: build failed"; exit 2; }
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
if [ "${1:-}" = "--main" ]; then
  RESONANCE_PORT=$PORT RESONANCE_ECHO_PATH=/echo RESONANCE_LOG=warn "$TARGET/release/resonance" start &
  URL="ws://127.0.0.1:$PORT/echo"
else
  "$TARGET/release/examples/echo" "127.0.0.1:$PORT" > /dev/null &
  URL="ws://127.0.0.1:$PORT/"
fi
PID=$!
trap 'kill $PID 2>/dev/null; wait $PID 2>/dev/null' EXIT
for _ in $(seq 50); do
  (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
  sleep 0.1
done
OUT="$TARGET/autobahn/$(date +%Y%m%d-%H%M%S)"
"$CHECK" --no-deflate --outdir "$OUT" "$URL"
