// Round trip of a chat message through the Laravel package, measured:
// WebSocket client → Resonance → POST to the Laravel app (php -S, ChatSocket::onMessage, the
// session user resolved) → actions → the "sent" answer back on the socket. Sequential messages
// on one connection (Resonance posts one connection's messages one at a time).
//
//   node tests/laravel-app/roundtrip.js [messages=300]      (RESONANCE_BIN picks the binary)
import WebSocket from 'ws';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { APP, BIN, Browser, PREFIX, USERS, artisan, laravelEnv, startLaravel } from './lib/harness.js';
import { ManagedProcess, RedisServer, envWithout, freePort, spawnAndWaitUp, startRedisWith } from '../common/harness-core.js';

const N = Number(process.argv[2] || 300);
const redis = await startRedisWith((port) => new RedisServer(port, { resetLog: true }));
const port = await freePort();
const laravel = await startLaravel({ redis, env: { RESONANCE_API_URL: `http://127.0.0.1:${port}` } });
const routes = await artisan(['resonance:routes', `--url=${laravel.url}`], laravelEnv({ redis, storage: laravel.storage }));
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'resonance-roundtrip-'));
const file = path.join(dir, 'resonance.toml');
fs.writeFileSync(
  file,
  `[server]\nhost = "127.0.0.1"\nport = ${port}\n\n[[apps]]\nid = "${APP.id}"\nkey = "${APP.key}"\nsecret = "${APP.secret}"\nredis_url = "${redis.url}"\nredis_prefix = "${PREFIX}"\n\n${routes.stdout}`,
);
const server = await spawnAndWaitUp({
  bin: BIN,
  args: ['start', '--config', file],
  env: { ...envWithout('RESONANCE_'), RUST_LOG: 'warn', NO_COLOR: '1' },
  create: (proc) => new ManagedProcess({ proc, host: '127.0.0.1', port, app: APP }),
});
try {
  const a = await new Browser(laravel, 'alice').login(USERS.alice);
  const ws = new WebSocket(`ws://127.0.0.1:${port}/chat-rooms/1`, { headers: { Cookie: a.cookie } });
  const queue = [];
  let wake = null;
  ws.on('message', (d) => {
    queue.push(JSON.parse(String(d)));
    if (wake) wake();
  });
  await new Promise((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('error', reject);
  });
  const nextSent = async () => {
    for (;;) {
      const i = queue.findIndex((m) => m.type === 'sent');
      if (i >= 0) return queue.splice(i, 1)[0];
      await new Promise((r) => (wake = r));
    }
  };
  const times = [];
  for (let i = 0; i < N + 20; i++) {
    const t0 = process.hrtime.bigint();
    ws.send(`message ${i}`);
    await nextSent();
    if (i >= 20) times.push(Number(process.hrtime.bigint() - t0) / 1e6); // 20 warm-up messages
  }
  times.sort((x, y) => x - y);
  const q = (p) => times[Math.min(times.length - 1, Math.floor(p * times.length))].toFixed(1);
  console.log(`${N} messages through ChatSocket (php -S, Laravel 8.83): p50 ${q(0.5)} ms, p90 ${q(0.9)} ms, p99 ${q(0.99)} ms, max ${q(1)} ms`);
  ws.close();
} finally {
  await server.stop();
  await laravel.stop();
  await redis.stop();
  fs.rmSync(dir, { recursive: true, force: true });
}
