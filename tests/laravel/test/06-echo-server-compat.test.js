// 6. Drop-in replacement for laravel-echo-server: `resonance start --echo-config
//    laravel-echo-server.json` (no RESONANCE_* env), Echo socket.io clients, Redis, and the
//    laravel-echo-server HTTP API (Bearer key / ?auth_key=).
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  useHarness, SioClient, capture, waitSubscriptions, waitIngestion, waitUntil, laravelPayload, echoApi,
  startRedis, freePort, userInfo, uid, sleep, LARAVEL_EVENT,
} from '../lib/harness.js';

const h = useHarness();
const APP_ID = 'a1b2c3d4e5f60718'; // laravel-echo-server init makes 16 hex chars: not numeric
const KEY = '0123456789abcdef0123456789abcdef';
const PREFIX = 'laravel_database_';
let redis, auth, server;

/** laravel-echo-server.json as `laravel-echo-server init` writes it, pointed at our peers. */
function echoConfig(port, over = {}) {
  return {
    authHost: auth.host,
    authEndpoint: '/broadcasting/auth',
    clients: [{ appId: APP_ID, key: KEY }],
    database: 'redis',
    databaseConfig: {
      redis: { host: '127.0.0.1', port: redis.port, keyPrefix: PREFIX },
      sqlite: { databasePath: '/database/laravel-echo-server.sqlite' },
    },
    devMode: false,
    host: '127.0.0.1',
    port: String(port),
    protocol: 'http',
    socketio: {},
    sslCertPath: '',
    sslKeyPath: '',
    sslCertChainPath: '',
    sslPassphrase: '',
    subscribers: { http: true, redis: true },
    apiOriginAllow: { allowCors: false, allowOrigin: '', allowMethods: '', allowHeaders: '' },
    ...over,
  };
}

before(async () => {
  redis = await h.redis();
  auth = await h.startAuth();
  server = await h.startEchoServer((port) => echoConfig(port));
  await waitIngestion(redis, PREFIX);
});

test('server started from laravel-echo-server.json answers /up and names the app from clients[0]', async () => {
  assert.equal(server.app.id, APP_ID);
  assert.equal((await server.get('/up')).status, 200);
  const st = await echoApi(server, 'GET', '/status');
  assert.equal(st.status, 200, `GET /apps/${APP_ID}/status with Bearer key: ${st.status} ${st.text}`);
  const root = await server.get('/');
  assert.equal(root.status, 200, 'GET / (laravel-echo-server answers OK, used as a health check)');
  assert.equal(root.text, 'OK');
});

for (const [version, transports] of [[2, ['websocket']], [2, ['polling']], [4, ['websocket']], [4, null]]) {
  test(`Echo socket.io ${version}.x (${transports ? transports.join(',') : 'default transports'}) receives Redis publishes`, async () => {
    const channel = uid('orders');
    const sio = await SioClient.connect(server, { version, transports });
    const got = capture('listen');
    sio.echo.channel(channel).listen('OrderShipped', got.cb);
    await waitSubscriptions(server, channel, 1);
    assert.equal(await redis.publish(`${PREFIX}${channel}`, laravelPayload(LARAVEL_EVENT, { id: 5 })), 1);
    assert.deepEqual((await got.nth(1))[0], { id: 5 });
    assert.deepEqual(sio.all(), [[LARAVEL_EVENT, channel, { id: 5 }]]);
  });
}

test('private channel authorised through authHost + authEndpoint with the session cookie', async () => {
  const name = uid('orders');
  const channel = `private-${name}`;
  const sio = await SioClient.connect(server, { version: 2, cookie: 'laravel_session=7' });
  const got = capture('private listen');
  sio.echo.private(name).listen('OrderShipped', got.cb);
  const req = await auth.waitFor(channel);
  assert.equal(req.path, '/broadcasting/auth');
  assert.equal(req.headers.cookie, 'laravel_session=7');
  assert.equal(req.headers['x-requested-with'], 'XMLHttpRequest');
  await waitSubscriptions(server, channel, 1);
  await redis.publish(`${PREFIX}${channel}`, laravelPayload(LARAVEL_EVENT, { id: 6 }));
  assert.deepEqual((await got.nth(1))[0], { id: 6 });

  const anon = await SioClient.connect(server, { version: 4 });
  anon.echo.private(name);
  assert.deepEqual(await anon.nextEvent('subscription_error'), ['subscription_error', channel, 403]);
});

test('HTTP API: status, channels, channel, presence users', async () => {
  const pub = uid('orders');
  const room = uid('room');
  const presence = `presence-${room}`;
  const a = await SioClient.connect(server, { version: 2 });
  const b = await SioClient.connect(server, { version: 4 });
  a.echo.channel(pub);
  b.echo.channel(pub);
  const g1 = await SioClient.connect(server, { version: 2, cookie: 'laravel_session=7' });
  const g2 = await SioClient.connect(server, { version: 4, cookie: 'laravel_session=7' });
  const hd = await SioClient.connect(server, { version: 4, cookie: 'laravel_session=8' });
  for (const c of [g1, g2, hd]) {
    const here = capture('here');
    c.echo.join(room).here(here.cb);
    await here.nth(1);
  }
  await waitSubscriptions(server, pub, 2);
  await waitSubscriptions(server, presence, 3);

  const st = await echoApi(server, 'GET', '/status');
  assert.equal(st.status, 200, st.text);
  assert.equal(typeof st.json.subscription_count, 'number', `status.subscription_count (${st.text})`);
  assert.ok(st.json.subscription_count >= 5, `subscription_count counts our 5 subscriptions (${st.text})`);
  assert.equal(typeof st.json.uptime, 'number', 'status.uptime');
  assert.equal(typeof st.json.memory_usage, 'object', 'status.memory_usage');
  assert.ok(st.json.memory_usage !== null);

  const chans = await echoApi(server, 'GET', '/channels');
  assert.equal(chans.status, 200, chans.text);
  assert.deepEqual(chans.json.channels[pub], { subscription_count: 2, occupied: true });
  assert.deepEqual(chans.json.channels[presence], { subscription_count: 3, occupied: true });

  const filtered = await echoApi(server, 'GET', `/channels?filter_by_prefix=presence-`);
  assert.equal(filtered.status, 200, filtered.text);
  assert.ok(filtered.json.channels[presence], 'presence channel listed');
  assert.equal(filtered.json.channels[pub], undefined, 'public channel filtered out');
  assert.ok(Object.keys(filtered.json.channels).every((n) => n.startsWith('presence-')));

  const one = await echoApi(server, 'GET', `/channels/${pub}`);
  assert.equal(one.status, 200, one.text);
  assert.equal(one.json.subscription_count, 2);
  assert.equal(one.json.occupied, true);

  const pres = await echoApi(server, 'GET', `/channels/${presence}`);
  assert.equal(pres.status, 200, pres.text);
  assert.equal(pres.json.subscription_count, 3);
  assert.equal(pres.json.occupied, true);
  assert.equal(pres.json.user_count, 2, 'user_count counts users, not connections');

  const empty = await echoApi(server, 'GET', `/channels/${uid('nobody')}`);
  assert.equal(empty.status, 200, empty.text);
  assert.equal(empty.json.occupied, false);
  assert.equal(empty.json.subscription_count ?? 0, 0);

  const users = await echoApi(server, 'GET', `/channels/${presence}/users`);
  assert.equal(users.status, 200, users.text);
  const list = users.json.users.map((u) => ({ id: u.id, user_info: u.user_info })).sort((x, y) => x.id - y.id);
  assert.deepEqual(list, [{ id: 7, user_info: userInfo(7) }, { id: 8, user_info: userInfo(8) }], 'users deduped with their user_info');

  const notPresence = await echoApi(server, 'GET', `/channels/${pub}/users`);
  assert.equal(notPresence.status, 400, `users of a non-presence channel → 400 (${notPresence.status} ${notPresence.text})`);
});

test('HTTP API: POST /events delivers (channel, channels, socket_id) and answers {"message":"ok"}', async () => {
  const c1 = uid('orders');
  const c2 = uid('orders');
  const x = await SioClient.connect(server, { version: 2 });
  const y = await SioClient.connect(server, { version: 4 });
  for (const s of [x, y]) {
    s.echo.channel(c1);
    s.echo.channel(c2);
  }
  await waitSubscriptions(server, c1, 2);
  await waitSubscriptions(server, c2, 2);

  const r = await echoApi(server, 'POST', '/events', { body: { channel: c1, name: 'X', data: { a: 1 } } });
  assert.equal(r.status, 200, r.text);
  assert.deepEqual(r.json, { message: 'ok' });
  assert.deepEqual(await x.nextEvent('X', c1), ['X', c1, { a: 1 }]);
  assert.deepEqual(await y.nextEvent('X', c1), ['X', c1, { a: 1 }]);

  const r2 = await echoApi(server, 'POST', '/events', { body: { channels: [c1, c2], name: 'Y', data: { b: 2 } } });
  assert.equal(r2.status, 200, r2.text);
  assert.deepEqual(r2.json, { message: 'ok' });
  for (const s of [x, y]) {
    assert.deepEqual(await s.nextEvent('Y', c1), ['Y', c1, { b: 2 }]);
    assert.deepEqual(await s.nextEvent('Y', c2), ['Y', c2, { b: 2 }]);
  }

  const r3 = await echoApi(server, 'POST', '/events', { body: { channel: c1, name: 'Z', data: { c: 3 }, socket_id: x.id } });
  assert.equal(r3.status, 200, r3.text);
  assert.deepEqual(await y.nextEvent('Z', c1), ['Z', c1, { c: 3 }]);
  await echoApi(server, 'POST', '/events', { body: { channel: c1, name: 'Barrier', data: {} } });
  await x.nextEvent('Barrier', c1);
  assert.equal(x.count('Z'), 0, 'socket_id excluded the 2.x client');

  const q = await echoApi(server, 'POST', '/events', { body: { channel: c1, name: 'Q', data: { q: 1 } }, asQuery: true });
  assert.equal(q.status, 200, `?auth_key= works: ${q.status} ${q.text}`);
  assert.deepEqual(await y.nextEvent('Q', c1), ['Q', c1, { q: 1 }]);

  // laravel-echo-server JSON-decodes a string `data` when it can (http-subscriber: try JSON.parse)
  const r4 = await echoApi(server, 'POST', '/events', { body: { channel: c1, name: 'S', data: '{"s":1}' } });
  assert.equal(r4.status, 200, r4.text);
  assert.deepEqual(await x.nextEvent('S', c1), ['S', c1, { s: 1 }]);
  const r5 = await echoApi(server, 'POST', '/events', { body: { channel: c1, name: 'T', data: 'plain text' } });
  assert.equal(r5.status, 200, r5.text);
  assert.deepEqual(await x.nextEvent('T', c1), ['T', c1, 'plain text']);

  const missing = await echoApi(server, 'POST', '/events', { body: { channel: c1, data: { a: 1 } } });
  assert.equal(missing.status, 400, `missing name → 400 (${missing.status} ${missing.text})`);
});

test('HTTP API: wrong key / no key / wrong app → 403 {"error":"Unauthorized"}', async () => {
  for (const [label, opts] of [
    ['wrong Bearer key', { key: 'f'.repeat(32) }],
    ['wrong ?auth_key', { key: 'nope', asQuery: true }],
    ['no key', { key: null }],
    ['wrong app id', { appId: 'ffffffffffffffff' }],
  ]) {
    const r = await echoApi(server, 'GET', '/status', opts);
    assert.equal(r.status, 403, `${label}: status (got ${r.status} ${r.text})`);
    assert.deepEqual(r.json, { error: 'Unauthorized' }, `${label}: body`);
  }
  const post = await echoApi(server, 'POST', '/events', { key: 'bad', body: { channel: 'orders', name: 'X', data: {} } });
  assert.equal(post.status, 403);
  assert.deepEqual(post.json, { error: 'Unauthorized' });
});

test('HTTP API: the app\'s public Pusher key is refused (403), as Bearer and as ?auth_key=', async () => {
  // The Pusher key is in every browser bundle: the unsigned API must never take it.
  const s = await h.startEchoServer((port) => echoConfig(port), { env: { RESONANCE_APP_KEY: 'browser-bundle-key' } });
  for (const asQuery of [false, true]) {
    const r = await echoApi(s, 'POST', '/events', { key: 'browser-bundle-key', asQuery, body: { channel: 'private-App.Models.User.1', name: 'X', data: {} } });
    assert.equal(r.status, 403, `public key (query ${asQuery}): ${r.status} ${r.text}`);
    assert.deepEqual(r.json, { error: 'Unauthorized' });
  }
  assert.equal((await echoApi(s, 'GET', '/status')).status, 200, 'the clients key still works');
  // A server whose app has no API key: the echo API is off and says how to turn it on.
  const plain = await h.startServer();
  const r = await echoApi(plain, 'GET', '/channels/presence-x/users', { key: plain.app.key });
  assert.equal(r.status, 403, `public key on a server without extra_api_keys: ${r.status} ${r.text}`);
  assert.match(r.json.error, /extra_api_keys/);
  const q = await echoApi(plain, 'POST', '/events', { key: plain.app.key, asQuery: true, body: { channel: 'private-a', name: 'X', data: {} } });
  assert.equal(q.status, 403, q.text);
});

test('HTTP API: invalid JSON → 400 and the server stays up (laravel-echo-server crashed here)', async () => {
  const channel = uid('orders');
  const sio = await SioClient.connect(server, { version: 2 });
  sio.echo.channel(channel);
  await waitSubscriptions(server, channel, 1);
  for (const body of ['{not json', '', '[1,2', 'null', '"x"']) {
    const r = await echoApi(server, 'POST', '/events', { body });
    assert.equal(r.status, 400, `body ${JSON.stringify(body)} → 400 (got ${r.status} ${r.text})`);
  }
  // The 'After' event below is the sentinel that the server kept serving.
  assert.equal(server.running, true, `server still running (${JSON.stringify(server.exitInfo)})`);
  assert.equal((await server.get('/up')).status, 200);
  const ok = await echoApi(server, 'POST', '/events', { body: { channel, name: 'After', data: { ok: true } } });
  assert.equal(ok.status, 200, ok.text);
  assert.deepEqual(await sio.nextEvent('After', channel), ['After', channel, { ok: true }]);
  assert.equal(sio.isConnected, true);
});

test('LARAVEL_ECHO_SERVER_PORT overrides the file port; LARAVEL_ECHO_SERVER_AUTH_HOST overrides authHost', async () => {
  const envPort = await freePort();
  const other = await h.startAuth();
  const s = await h.startEchoServer((port) => echoConfig(port), {
    env: { LARAVEL_ECHO_SERVER_PORT: String(envPort), LARAVEL_ECHO_SERVER_AUTH_HOST: other.host },
    listenPort: () => envPort,
  });
  try {
    assert.equal(s.port, envPort);
    assert.equal((await s.get('/up')).status, 200, 'listening on the env port');
    const fileUp = await fetch(`http://127.0.0.1:${s.config.port}/up`, { signal: AbortSignal.timeout(2000) }).then((r) => r.status, () => 'refused');
    assert.equal(fileUp, 'refused', 'not listening on the file port');
    const name = uid('orders');
    const sio = await SioClient.connect(s, { version: 4, cookie: 'laravel_session=7' });
    sio.echo.private(name);
    await other.waitFor(`private-${name}`);
    assert.equal(auth.forChannel(`private-${name}`).length, 0, 'the file authHost was not used');
  } finally {
    await s.stop();
  }
});

test('databaseConfig.redis password + db, and LARAVEL_ECHO_SERVER_REDIS_PORT override', async () => {
  const secured = await startRedis({ password: 's3cret:/@x' });
  try {
    const s = await h.startEchoServer((port) =>
      echoConfig(port, {
        databaseConfig: { redis: { host: '127.0.0.1', port: 1, password: 's3cret:/@x', db: 3, keyPrefix: 'laravel-database-' } },
      }),
      { env: { LARAVEL_ECHO_SERVER_REDIS_PORT: String(secured.port) } },
    );
    try {
      await waitIngestion(secured, 'laravel-database-');
      const channel = uid('orders');
      const sio = await SioClient.connect(s, { version: 2 });
      const got = capture('listen');
      sio.echo.channel(channel).listen('OrderShipped', got.cb);
      await waitSubscriptions(s, channel, 1);
      await secured.publish(`laravel-database-${channel}`, laravelPayload(LARAVEL_EVENT, { id: 5 }));
      assert.deepEqual((await got.nth(1))[0], { id: 5 });
    } finally {
      await s.stop();
    }
  } finally {
    await secured.stop();
  }
});

test('protocol https + sslCertPath/sslKeyPath: Echo socket.io 2.x and 4.x connect over TLS', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'resonance-tls-'));
  try {
    const cert = path.join(dir, 'cert.pem');
    const key = path.join(dir, 'key.pem');
    execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '1',
      '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1'], { stdio: 'ignore' });
    const ca = fs.readFileSync(cert);
    const s = await h.startEchoServer((port) => echoConfig(port, { protocol: 'https', sslCertPath: cert, sslKeyPath: key }), { tls: { ca } });
    try {
      const channel = uid('orders');
      const c2 = await SioClient.connect(s, { version: 2, transports: null });
      const c4 = await SioClient.connect(s, { version: 4 });
      c2.echo.channel(channel);
      c4.echo.channel(channel);
      await waitUntil(async () => (await s.get(`/apps/${APP_ID}/channels/${channel}`, { Authorization: `Bearer ${KEY}` })).json?.subscription_count === 2, 5000, 'two TLS subscriptions');
      await redis.publish(`${PREFIX}${channel}`, laravelPayload(LARAVEL_EVENT, { id: 5 }));
      assert.deepEqual(await c2.nextEvent(LARAVEL_EVENT, channel), [LARAVEL_EVENT, channel, { id: 5 }]);
      assert.deepEqual(await c4.nextEvent(LARAVEL_EVENT, channel), [LARAVEL_EVENT, channel, { id: 5 }]);
    } finally {
      await s.stop();
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('apiOriginAllow → CORS headers on the HTTP API (and its preflight)', async () => {
  const allowHeaders = 'Origin, Content-Type, X-Auth-Token, X-Requested-With, Accept, Authorization, X-CSRF-TOKEN, X-Socket-Id';
  const s = await h.startEchoServer((port) =>
    echoConfig(port, { apiOriginAllow: { allowCors: true, allowOrigin: 'http://app.test', allowMethods: 'GET, POST', allowHeaders } }),
  );
  try {
    const r = await fetch(`${s.httpUrl}/apps/${APP_ID}/status`, { headers: { Origin: 'http://app.test', Authorization: `Bearer ${KEY}` } });
    assert.equal(r.status, 200);
    assert.equal(r.headers.get('access-control-allow-origin'), 'http://app.test', 'Access-Control-Allow-Origin on an API answer');
    const pre = await fetch(`${s.httpUrl}/apps/${APP_ID}/events`, {
      method: 'OPTIONS',
      headers: { Origin: 'http://app.test', 'Access-Control-Request-Method': 'POST', 'Access-Control-Request-Headers': 'authorization,content-type' },
    });
    assert.ok(pre.status === 200 || pre.status === 204, `preflight status ${pre.status}`);
    assert.equal(pre.headers.get('access-control-allow-origin'), 'http://app.test');
    assert.match(String(pre.headers.get('access-control-allow-methods')), /POST/);
    assert.match(String(pre.headers.get('access-control-allow-headers')), /Authorization/i);
  } finally {
    await s.stop();
  }
});

test('devMode → debug logging; an unsupported setting (database sqlite) is named in a warning', async () => {
  const s = await h.startEchoServer((port) => echoConfig(port, { devMode: true, database: 'sqlite' }));
  try {
    const sio = await SioClient.connect(s, { version: 2 });
    sio.echo.channel(uid('orders'));
    sio.echo.private(uid('orders')); // no cookie: refused (laravel-echo-server's devMode logs these)
    await sio.nextEvent('subscription_error');
    await waitUntil(() => s.lines.some((l) => /\bDEBUG\b/.test(l)), 5000, 'a DEBUG log line with devMode: true');
    assert.ok(s.lines.some((l) => /\bWARN\b/.test(l) && /database/.test(l) && /sqlite/.test(l)), `a WARN naming database/sqlite:\n${s.logTail(20)}`);
  } finally {
    await s.stop();
  }
  // and without devMode there is no debug output
  assert.ok(!server.lines.some((l) => /\bDEBUG\b/.test(l)), 'devMode false → no DEBUG lines');
});

test('server never panicked', () => {
  for (const s of h.servers) assert.ok(!/panicked at/.test(s.lines.join('\n')), `panic:\n${s.logTail(20)}`);
});
