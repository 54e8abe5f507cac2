// HTTP fallback next to WebSocket, in one run against one server:
//  1. delivery latency: one pusher-js client per transport (ws, xhr_streaming, xhr_polling) on
//     one channel; events triggered through the HTTP API carry their send time; p50/p99 of
//     (arrival - send) per transport, all clients in this one process.
//  2. memory per idle fallback session: RSS of the server before and after N idle
//     xhr_streaming sessions (each subscribed to a channel), divided by N.
//
// usage: node bench/fallback/fallback.mjs [--events 400] [--rate 50] [--idle 500]
// env: RESONANCE_BIN (default target/release/resonance). Needs `npm ci` in tests/js (pusher-js).
import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import crypto from 'node:crypto';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const require = createRequire(path.join(ROOT, 'tests/js/package.json'));
const Pusher = require('pusher-js');
const args = Object.fromEntries(process.argv.slice(2).join(' ').split('--').filter(Boolean).map((a) => a.trim().split(/\s+/)));
const EVENTS = Number(args.events || 400);
const RATE = Number(args.rate || 50);
const IDLE = Number(args.idle || 500);
const BIN = process.env.RESONANCE_BIN || path.join(ROOT, 'target/release/resonance');
const app = { id: '777777', key: 'bench-fallback-key', secret: 'bench-fallback-secret' };

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const freePort = () => new Promise((resolve) => {
  const s = net.createServer().listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => resolve(port)); });
});
const rssKiB = (pid) => Number(/VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))[1]);

async function trigger(port, channel, data) {
  const body = JSON.stringify({ name: 'tick', channel, data: JSON.stringify(data) });
  const p = `/apps/${app.id}/events`;
  const q = { auth_key: app.key, auth_timestamp: String(Math.floor(Date.now() / 1000)), auth_version: '1.0',
    body_md5: crypto.createHash('md5').update(body).digest('hex') };
  const qs = Object.keys(q).sort().map((k) => `${k}=${q[k]}`).join('&');
  const sig = crypto.createHmac('sha256', app.secret).update(`POST\n${p}\n${qs}`).digest('hex');
  const res = await fetch(`http://127.0.0.1:${port}${p}?${qs}&auth_signature=${sig}`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body });
  if (res.status !== 200) throw new Error(`trigger: ${res.status}`);
}

function client(port, transport) {
  const ws = transport === 'ws';
  return new Pusher(app.key, {
    cluster: 'mt1', forceTLS: false, disableStats: true, enabledTransports: [transport],
    wsHost: '127.0.0.1', wsPort: port, httpHost: '127.0.0.1', httpPort: port, httpPath: '/pusher',
    ...(ws ? {} : {}),
  });
}
const connected = (p) => new Promise((resolve) => {
  if (p.connection.state === 'connected') resolve();
  p.connection.bind('connected', resolve);
});
const subscribed = (p, ch) => new Promise((resolve) => p.subscribe(ch).bind('pusher:subscription_succeeded', resolve));
const pct = (xs, q) => { const s = [...xs].sort((a, b) => a - b); return s[Math.min(s.length - 1, Math.floor(q * s.length))]; };

const port = await freePort();
const server = spawn(BIN, ['start', '--host', '127.0.0.1', '--port', String(port)], {
  env: { ...process.env, RESONANCE_APP_ID: app.id, RESONANCE_APP_KEY: app.key, RESONANCE_APP_SECRET: app.secret, RESONANCE_LOG: 'warn' },
  stdio: 'ignore',
});
try {
  for (let i = 0; ; i++) {
    try { if ((await fetch(`http://127.0.0.1:${port}/up`)).ok) break; } catch {}
    if (i > 100) throw new Error('server did not start');
    await sleep(100);
  }
  // 1. latency, side by side
  const channel = 'latency';
  const transports = ['ws', 'xhr_streaming', 'xhr_polling'];
  const lat = Object.fromEntries(transports.map((t) => [t, []]));
  const clients = [];
  for (const t of transports) {
    const p = client(port, t);
    clients.push(p);
    await connected(p);
    if (p.connection.connection.transport.name !== t) throw new Error(`${t}: got ${p.connection.connection.transport.name}`);
    await subscribed(p, channel);
    p.channel(channel).bind('tick', (d) => lat[t].push(performance.timeOrigin + performance.now() - d.at));
  }
  for (let i = 0; i < EVENTS; i++) {
    await trigger(port, channel, { i, at: performance.timeOrigin + performance.now() });
    await sleep(1000 / RATE);
  }
  const deadline = Date.now() + 10000;
  while (transports.some((t) => lat[t].length < EVENTS) && Date.now() < deadline) await sleep(50);
  for (const p of clients) p.disconnect();
  const rows = transports.map((t) => ({ transport: t, received: `${lat[t].length}/${EVENTS}`,
    p50_ms: pct(lat[t], 0.5)?.toFixed(2), p99_ms: pct(lat[t], 0.99)?.toFixed(2) }));
  console.table(rows);

  // 2. memory per idle fallback session
  await sleep(1000);
  const before = rssKiB(server.pid);
  const idle = [];
  for (let i = 0; i < IDLE; i += 50) {
    const batch = [];
    for (let j = i; j < Math.min(IDLE, i + 50); j++) {
      const p = client(port, 'xhr_streaming');
      idle.push(p);
      batch.push(connected(p).then(() => subscribed(p, `idle-${j % 100}`)));
    }
    await Promise.all(batch);
  }
  await sleep(2000);
  const after = rssKiB(server.pid);
  const perSession = (after - before) / IDLE;
  console.log(JSON.stringify({ idle_sessions: IDLE, rss_before_kib: before, rss_after_kib: after, kib_per_idle_session: Number(perSession.toFixed(2)) }));
  for (const p of idle) p.disconnect();
  console.log(JSON.stringify({ latency: rows }));
} finally {
  server.kill('SIGTERM');
}
process.exit(0);
