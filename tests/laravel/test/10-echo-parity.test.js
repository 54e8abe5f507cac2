// 10. laravel-echo-server parity (issue 14): ~100 KB broadcasts through Redis and the echo API
//     (per-source limits, drops counted in /metrics and logged), no key → the same 403 as a
//     wrong key on every endpoint, /status counts connected Socket.IO clients, the devMode log
//     lines users grep for, and the 400 body of an incomplete POST /events.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import {
  useHarness, SioClient, RawClient, capture, waitSubscriptions, waitIngestion, waitUntil, laravelPayload,
  echoApi, pusherApi, uid, LARAVEL_EVENT,
} from '../lib/harness.js';

const h = useHarness();
const APP_ID = 'a1b2c3d4e5f60718';
const KEY = '0123456789abcdef0123456789abcdef';
const PREFIX = 'laravel_database_';
let redis, auth, server;

function echoConfig(port, over = {}) {
  return {
    authHost: auth.host,
    authEndpoint: '/broadcasting/auth',
    clients: [{ appId: APP_ID, key: KEY }],
    database: 'redis',
    databaseConfig: { redis: { host: '127.0.0.1', port: redis.port, keyPrefix: PREFIX } },
    devMode: false,
    host: '127.0.0.1',
    port: String(port),
    protocol: 'http',
    subscribers: { http: true, redis: true },
    ...over,
  };
}

/** A Laravel broadcast whose JSON `data` is about `bytes` long. */
const bigData = (bytes, tag) => ({ tag, blob: 'x'.repeat(bytes) });

/** resonance_dropped_events_total for (source, reason), 0 when absent. */
async function dropped(s, appId, source, reason) {
  const text = (await s.get('/metrics')).text;
  const re = new RegExp(`^resonance_dropped_events_total\\{app_id="${appId}",source="${source}",reason="${reason}"\\} (\\d+)$`, 'm');
  const m = text.match(re);
  return m ? Number(m[1]) : 0;
}

before(async () => {
  redis = await h.redis();
  auth = await h.startAuth();
  server = await h.startEchoServer((port) => echoConfig(port, { devMode: true }));
  await waitIngestion(redis, PREFIX);
});

test('a ~100 KB Redis broadcast reaches Socket.IO 2.x/4.x and Pusher clients of an --echo-config app', async () => {
  const channel = uid('orders');
  const s2 = await SioClient.connect(server, { version: 2 });
  const s4 = await SioClient.connect(server, { version: 4, transports: null });
  s2.echo.channel(channel);
  s4.echo.channel(channel);
  await waitSubscriptions(server, channel, 2);
  const data = bigData(100 * 1024, 'redis');
  assert.equal(await redis.publish(`${PREFIX}${channel}`, laravelPayload(LARAVEL_EVENT, data)), 1);
  assert.deepEqual(await s2.nextEvent(LARAVEL_EVENT, channel), [LARAVEL_EVENT, channel, data]);
  assert.deepEqual(await s4.nextEvent(LARAVEL_EVENT, channel), [LARAVEL_EVENT, channel, data]);
  assert.equal(await dropped(server, APP_ID, 'redis', 'too_large'), 0);
});

test('a ~100 KB event posted to the echo API (POST /apps/{id}/events) is delivered', async () => {
  const channel = uid('orders');
  const s2 = await SioClient.connect(server, { version: 2 });
  s2.echo.channel(channel);
  await waitSubscriptions(server, channel, 1);
  const data = bigData(100 * 1024, 'api');
  const r = await echoApi(server, 'POST', '/events', { body: { channel, name: 'Big', data } });
  assert.equal(r.status, 200, r.text);
  assert.deepEqual(await s2.nextEvent('Big', channel), ['Big', channel, data]);
});

test('env-configured Redis ingestion delivers 100 KB to Pusher clients too; the Pusher HTTP API keeps 10 KB (413)', async () => {
  const s = await h.startServer({ redis, prefix: PREFIX });
  await waitIngestion(redis, PREFIX);
  const channel = uid('orders');
  const raw = await RawClient.connect(s);
  await raw.subscribe(channel);
  const sio = await SioClient.connect(s, { version: 4 });
  sio.echo.channel(channel);
  await waitSubscriptions(s, channel, 2);
  const data = bigData(100 * 1024, 'env');
  await redis.publish(`${PREFIX}${channel}`, laravelPayload(LARAVEL_EVENT, data));
  const m = await raw.nextEvent(LARAVEL_EVENT, channel);
  assert.deepEqual(JSON.parse(m.data), data);
  assert.deepEqual(await sio.nextEvent(LARAVEL_EVENT, channel), [LARAVEL_EVENT, channel, data]);
  const big = await pusherApi(s, 'POST', '/events', { body: { name: 'X', channel, data: JSON.stringify(bigData(11 * 1024)) } });
  assert.equal(big.status, 413, `Pusher API 11 KB → 413 (${big.status} ${big.text})`);
});

test('over redis_max_event_bytes: dropped, counted per app and reason in /metrics, logged with the setting to raise', async () => {
  const s = await h.startServer({ redis, prefix: PREFIX, env: { RESONANCE_APP_REDIS_MAX_EVENT_BYTES: '50000' } });
  await waitIngestion(redis, PREFIX);
  const channel = uid('orders');
  const sio = await SioClient.connect(s, { version: 2 });
  sio.echo.channel(channel);
  await waitSubscriptions(s, channel, 1);
  assert.equal(await dropped(s, s.app.id, 'redis', 'too_large'), 0);
  await redis.publish(`${PREFIX}${channel}`, laravelPayload('Huge', bigData(60000)));
  await redis.publish(`${PREFIX}${channel}`, laravelPayload('Fits', bigData(40000)));
  await redis.publish(`${PREFIX}${channel}`, 'not json');
  await redis.publish(`${PREFIX}${channel}`, laravelPayload('Sentinel', { ok: 1 }));
  await sio.nextEvent('Sentinel', channel);
  assert.equal(sio.count('Huge'), 0, 'the over-limit broadcast was not delivered');
  assert.equal(sio.count('Fits'), 1, 'the one under the limit was');
  assert.equal(await dropped(s, s.app.id, 'redis', 'too_large'), 1);
  assert.equal(await dropped(s, s.app.id, 'redis', 'not_a_broadcast'), 1);
  await waitUntil(() => s.lines.some((l) => /WARN/.test(l) && /redis_max_event_bytes/.test(l) && l.includes(channel)), 5000,
    'a WARN line naming the channel and redis_max_event_bytes');
});

test('over echo_api_max_event_bytes: 413, counted and logged', async () => {
  const s = await h.startEchoServer((port) => echoConfig(port), { env: { RESONANCE_APP_ECHO_API_MAX_EVENT_BYTES: '20000' } });
  const r = await echoApi(s, 'POST', '/events', { body: { channel: 'orders', name: 'X', data: bigData(30000) } });
  assert.equal(r.status, 413, r.text);
  assert.match(r.json.error, /echo_api_max_event_bytes/);
  assert.equal(await dropped(s, APP_ID, 'echo_api', 'too_large'), 1);
  assert.ok(s.lines.some((l) => /WARN/.test(l) && /echo_api_max_event_bytes/.test(l)), s.logTail(10));
});

test('echo API: no key at all → the same 403 {"error":"Unauthorized"} as a wrong key, on every endpoint', async () => {
  const endpoints = [
    ['GET', '/status'],
    ['GET', '/channels'],
    ['GET', '/channels/orders'],
    ['GET', '/channels/presence-room/users'],
    ['POST', '/events', { channel: 'orders', name: 'X', data: {} }],
  ];
  for (const [method, p, body] of endpoints) {
    const wrong = await echoApi(server, method, p, { key: 'f'.repeat(32), body });
    const none = await echoApi(server, method, p, { key: null, body });
    const noneOtherApp = await echoApi(server, method, p, { key: null, body, appId: 'ffffffffffffffff' });
    for (const [label, r] of [['wrong key', wrong], ['no key', none], ['no key, unknown app', noneOtherApp]]) {
      assert.equal(r.status, 403, `${method} ${p} ${label}: ${r.status} ${r.text}`);
      assert.deepEqual(r.json, { error: 'Unauthorized' }, `${method} ${p} ${label}`);
    }
  }
});

test('echo API /status: subscription_count is the number of connected Socket.IO clients; memory_usage as Node reports it', async () => {
  const s = await h.startEchoServer((port) => echoConfig(port), { env: { RESONANCE_APP_KEY: 'browser-bundle-key' } });
  const status = async () => {
    const r = await echoApi(s, 'GET', '/status');
    assert.equal(r.status, 200, r.text);
    return r.json;
  };
  assert.equal((await status()).subscription_count, 0);
  const a = await SioClient.connect(s, { version: 2 }); // subscribed to nothing
  const b = await SioClient.connect(s, { version: 4 });
  const c = await SioClient.connect(s, { version: 4, transports: ['polling'] });
  const ch1 = uid('orders');
  const ch2 = uid('orders');
  b.echo.channel(ch1);
  b.echo.channel(ch2);
  c.echo.channel(ch1);
  await waitSubscriptions(s, ch1, 2);
  await waitSubscriptions(s, ch2, 1);
  const raw = await RawClient.connect(s, { key: 'browser-bundle-key' }); // a Pusher client is not a Socket.IO client
  await raw.subscribe(ch1);
  await waitSubscriptions(s, ch1, 3);
  const st = await status();
  assert.equal(st.subscription_count, 3, `three Socket.IO clients connected (${JSON.stringify(st)})`);
  assert.equal(typeof st.uptime, 'number');
  for (const k of ['rss', 'heapTotal', 'heapUsed', 'external']) {
    assert.equal(typeof st.memory_usage[k], 'number', `memory_usage.${k}`);
  }
  assert.ok(st.memory_usage.rss > 0);
  a.disconnect();
  await waitUntil(async () => (await status()).subscription_count === 2, 5000, 'subscription_count back to 2 after a disconnect');
});

test('echo API: an incomplete POST /events → 400 with laravel-echo-server\'s message', async () => {
  for (const body of [{ channel: 'orders', data: {} }, { name: 'X', data: {} }, { channel: 'orders', name: 'X' }]) {
    const r = await echoApi(server, 'POST', '/events', { body });
    assert.equal(r.status, 400, `${JSON.stringify(body)}: ${r.status} ${r.text}`);
    assert.deepEqual(r.json, { error: 'Event must include channel, event name and data' });
  }
});

test('devMode: the log lines laravel-echo-server prints (joined/left channel, auth, Channel:/Event:)', async () => {
  const pub = uid('orders');
  const priv = `private-${uid('orders')}`;
  const refused = `private-forbidden-${uid('orders')}`;
  const sio = await SioClient.connect(server, { version: 2, cookie: 'laravel_session=7' });
  const got = capture('listen');
  sio.echo.channel(pub).listen('OrderShipped', got.cb);
  sio.echo.private(priv.slice('private-'.length));
  sio.echo.private(refused.slice('private-'.length));
  await waitSubscriptions(server, pub, 1);
  await waitSubscriptions(server, priv, 1);
  await sio.nextEvent('subscription_error', refused);
  await redis.publish(`${PREFIX}${pub}`, laravelPayload(LARAVEL_EVENT, { id: 1 }));
  await got.nth(1);
  sio.echo.leaveChannel(pub);
  await waitSubscriptions(server, pub, 0);
  const id = sio.id;
  const expect = [
    `${id} joined channel: ${pub}`,
    `${id} joined channel: ${priv}`,
    `${id} authenticated for: ${priv}`,
    `${id} could not be authenticated to ${refused}`,
    `Channel: ${PREFIX}${pub}`,
    `Event: ${LARAVEL_EVENT}`,
    `${id} left channel: ${pub} (unsubscribed)`,
  ];
  for (const line of expect) {
    await waitUntil(() => server.lines.some((l) => l.includes(line)), 5000, () => `a log line with "${line}":\n${server.logTail(30)}`);
  }
  sio.disconnect();
  await waitUntil(() => server.lines.some((l) => l.includes(`${id} left channel: ${priv} (`)), 5000, 'left channel on disconnect');
});

test('server never panicked', () => {
  for (const s of h.servers) assert.ok(!/panicked at/.test(s.lines.join('\n')), `panic:\n${s.logTail(20)}`);
});
