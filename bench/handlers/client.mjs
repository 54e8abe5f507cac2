// Handler round trips measured from a WebSocket client: a message goes to
// Resonance, is POSTed to the handler, whose answer sends it back.
//   node client.mjs latency URL N      -> p50/p99 of N sequential round trips
//   node client.mjs throughput URL CONNS SECONDS -> round trips per second
// `ws` comes from the handler test suite's node_modules.
import { createRequire } from 'node:module';

const require = createRequire(new URL('../../tests/handlers/package.json', import.meta.url));
const WebSocket = require('ws');
const [mode, url] = process.argv.slice(2, 4);

function open() {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url);
    ws.on('open', () => resolve(ws));
    ws.on('error', reject);
  });
}

function roundTrip(ws, text) {
  return new Promise((resolve) => {
    ws.once('message', () => resolve());
    ws.send(text);
  });
}

const pct = (sorted, p) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];

if (mode === 'latency') {
  const n = Number(process.argv[4] || 2000);
  const ws = await open();
  for (let i = 0; i < 100; i++) await roundTrip(ws, `warm${i}`);
  const times = [];
  for (let i = 0; i < n; i++) {
    const t = process.hrtime.bigint();
    await roundTrip(ws, `m${i}`);
    times.push(Number(process.hrtime.bigint() - t) / 1e6);
  }
  times.sort((a, b) => a - b);
  console.log(JSON.stringify({ mode, url, n, p50_ms: +pct(times, 50).toFixed(3), p99_ms: +pct(times, 99).toFixed(3) }));
  ws.close();
} else {
  const conns = Number(process.argv[4] || 64);
  const seconds = Number(process.argv[5] || 5);
  const sockets = await Promise.all(Array.from({ length: conns }, open));
  let done = 0;
  let running = true;
  const loops = sockets.map(async (ws, i) => {
    let k = 0;
    while (running) {
      await roundTrip(ws, `c${i}-${k++}`);
      done++;
    }
  });
  await new Promise((r) => setTimeout(r, 1000)); // warm-up
  const start = done;
  const t0 = Date.now();
  await new Promise((r) => setTimeout(r, seconds * 1000));
  const calls = done - start;
  const elapsed = (Date.now() - t0) / 1000;
  running = false;
  await Promise.all(loops);
  console.log(JSON.stringify({ mode, url, conns, seconds: elapsed, round_trips: calls, per_second: Math.round(calls / elapsed) }));
  for (const ws of sockets) ws.close();
}
