// 11. The lean Engine.IO WebSocket transport: socket.io-client 2.x (EIO3) and 4.x (EIO4) with
//     `transports: ['websocket']` open the WebSocket directly and run on Resonance's own
//     Engine.IO loop (the polling → websocket upgrade stays on engineioxide). Echo through
//     Redis on both, side by side with polling clients; heartbeats with a short interval
//     (clients stay connected for several of them, a client that stops answering is dropped);
//     a bad frame closes only its sender; wss://.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import WebSocket from 'ws';
import {
  useHarness, SioClient, capture, waitSubscriptions, waitIngestion, waitUntil, laravelPayload, uid,
  LARAVEL_EVENT,
} from '../lib/harness.js';

const h = useHarness();
const PREFIX = 'lean_';
let redis, server;

before(async () => {
  redis = await h.redis();
  // A 1 s heartbeat: several rounds fit in a test.
  server = await h.startServer({
    redis,
    prefix: PREFIX,
    env: { RESONANCE_SOCKETIO_PING_INTERVAL: '1', RESONANCE_SOCKETIO_PING_TIMEOUT: '1' },
  });
  await waitIngestion(redis, PREFIX);
});

/** A hand-driven Engine.IO WebSocket client: records every text frame and the close. */
function rawEio(srv, eio) {
  const url = `${srv.httpUrl.replace(/^http/, 'ws')}/socket.io/?EIO=${eio}&transport=websocket`;
  const ws = new WebSocket(url);
  const c = { ws, frames: [], close: null };
  ws.on('message', (m) => c.frames.push(m.toString()));
  ws.on('close', (code, reason) => (c.close = { code, reason: reason.toString() }));
  ws.on('error', () => {});
  return new Promise((resolve, reject) => {
    ws.on('open', () => resolve(c));
    ws.on('error', reject);
  });
}

test('Echo over socket.io-client 2.x and 4.x, websocket only, next to polling clients: Redis broadcasts reach all', async () => {
  const channel = uid('orders');
  const clients = [
    await SioClient.connect(server, { version: 2 }),
    await SioClient.connect(server, { version: 4 }),
    await SioClient.connect(server, { version: 2, transports: ['polling'] }),
    await SioClient.connect(server, { version: 4, transports: null }),
  ];
  const got = clients.map(() => capture('broadcast'));
  clients.forEach((c, i) => c.echo.channel(channel).listen('OrderShipped', got[i].cb));
  await waitSubscriptions(server, channel, clients.length);
  // The websocket-only clients opened their WebSocket directly: no upgrade offered.
  for (const c of clients.slice(0, 2)) assert.equal(c.socket.io.engine.transport.name, 'websocket');
  for (let id = 1; id <= 3; id++) await redis.publish(`${PREFIX}${channel}`, laravelPayload(LARAVEL_EVENT, { id }));
  for (const g of got) {
    for (let id = 1; id <= 3; id++) assert.deepEqual((await g.nth(id))[0], { id });
  }
  // `socket` (X-Socket-ID) excludes the sender, whichever transport it is on.
  await redis.publish(`${PREFIX}${channel}`, laravelPayload(LARAVEL_EVENT, { id: 4 }, clients[1].id));
  await redis.publish(`${PREFIX}${channel}`, laravelPayload(LARAVEL_EVENT, { id: 5 }));
  assert.deepEqual((await got[1].nth(4))[0], { id: 5 }, 'the excluded websocket client skipped id 4');
  assert.deepEqual((await got[0].nth(4))[0], { id: 4 });
  for (const c of clients) c.disconnect();
});

test('heartbeats: 2.x and 4.x clients stay connected over several intervals; a silent client is dropped', async () => {
  const channel = uid('hb');
  const c2 = await SioClient.connect(server, { version: 2 });
  const c4 = await SioClient.connect(server, { version: 4 });
  const dead4 = await rawEio(server, 4);
  const dead3 = await rawEio(server, 3);
  await waitUntil(() => dead4.frames.length >= 1 && dead3.frames.length >= 2, 3000, 'open packets');
  const open = JSON.parse(dead4.frames[0].slice(1));
  assert.deepEqual(open.upgrades, []);
  assert.equal(open.pingInterval, 1000);
  assert.equal(open.pingTimeout, 1000);
  assert.equal(dead3.frames[1], '40', 'EIO3 clients are connected to / at once');
  dead4.ws.send('40');
  for (const c of [c2, c4]) c.echo.channel(channel);
  await new Promise((r) => setTimeout(r, 3500));
  // EIO4: the server pinged the raw client, which never answered; EIO3: it never pinged.
  assert.ok(dead4.frames.includes('2'), `the server pings EIO4 clients (${dead4.frames})`);
  await waitUntil(() => dead4.close && dead3.close, 3000, 'dead clients closed');
  assert.equal(c2.isConnected && c4.isConnected, true, 'real clients answered every heartbeat');
  await waitSubscriptions(server, channel, 2);
  await redis.publish(`${PREFIX}${channel}`, laravelPayload(LARAVEL_EVENT, { id: 9 }));
  for (const c of [c2, c4]) assert.deepEqual((await c.nextEvent(LARAVEL_EVENT, channel))[2], { id: 9 });
  c2.disconnect();
  c4.disconnect();
});

test('a bad Engine.IO packet closes only its sender (1002); the others keep receiving', async () => {
  const channel = uid('bad');
  const good = await SioClient.connect(server, { version: 4 });
  good.echo.channel(channel);
  const bad = await rawEio(server, 4);
  await waitUntil(() => bad.frames.length >= 1, 3000, 'open packet');
  bad.ws.send('40');
  bad.ws.send('x garbage');
  await waitUntil(() => bad.close, 3000, 'the bad client closed');
  assert.equal(bad.close.code, 1002);
  assert.match(bad.close.reason, /parse error/);
  await waitSubscriptions(server, channel, 1);
  await redis.publish(`${PREFIX}${channel}`, laravelPayload(LARAVEL_EVENT, { id: 1 }));
  assert.deepEqual((await good.nextEvent(LARAVEL_EVENT, channel))[2], { id: 1 });
  assert.equal(good.isConnected, true);
  good.disconnect();
});

test('wss://: websocket-only 2.x and 4.x clients over the built-in TLS', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'resonance-lean-tls-'));
  const cert = path.join(dir, 'cert.pem');
  const key = path.join(dir, 'key.pem');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '1',
    '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1'], { stdio: 'ignore' });
  const ca = fs.readFileSync(cert);
  const s = await h.startEchoServer((port) => ({
    authHost: 'http://127.0.0.1:1', authEndpoint: '/broadcasting/auth',
    clients: [{ appId: 'leantls', key: '0123456789abcdef0123456789abcdef' }],
    database: 'redis', databaseConfig: { redis: { host: '127.0.0.1', port: redis.port, keyPrefix: PREFIX } },
    devMode: false, host: '127.0.0.1', port: String(port), protocol: 'https', sslCertPath: cert, sslKeyPath: key,
    socketio: {}, subscribers: { http: true, redis: true },
  }), { tls: { ca } });
  try {
    const channel = uid('tls');
    const clients = [await SioClient.connect(s, { version: 2 }), await SioClient.connect(s, { version: 4 })];
    for (const c of clients) c.echo.channel(channel);
    await waitUntil(async () => (await s.get(`/apps/leantls/channels/${channel}`, { Authorization: 'Bearer 0123456789abcdef0123456789abcdef' })).json?.subscription_count === 2, 5000, 'two wss subscriptions');
    await redis.publish(`${PREFIX}${channel}`, laravelPayload(LARAVEL_EVENT, { id: 7 }));
    for (const c of clients) assert.deepEqual(await c.nextEvent(LARAVEL_EVENT, channel), [LARAVEL_EVENT, channel, { id: 7 }]);
    for (const c of clients) c.disconnect();
  } finally {
    await s.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
