// 7. Socket.IO front-end details that real browsers and clients depend on: Engine.IO v3/v4
//    polling handshake and CORS, EIO3 polling length framing (UTF-16), allowed origins,
//    whisper rate limit / client_events off, and garbage from a client.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import {
  useHarness, SioClient, RawClient, capture, waitSubscriptions, waitIngestion, waitUntil, laravelPayload, uid,
  withTimeout, LARAVEL_EVENT,
} from '../lib/harness.js';

const h = useHarness();
const PREFIX = 'laravel_database_';
let redis, server, auth;

before(async () => {
  redis = await h.redis();
  auth = await h.startAuth();
  server = await h.startServer({ redis, prefix: PREFIX, auth });
  await waitIngestion(redis, PREFIX);
});

/**
 * Sentinel for whispers A sent on `channel` (on server `srv`, Redis prefix `prefix`): the server
 * handles one socket's messages in order, so once a subscription A asks for afterwards shows up,
 * every earlier whisper has been relayed (or dropped); an event then published on the same channel
 * reaches B after all of them. Returns when B has it.
 */
async function afterWhispers(srv, prefix, A, B, channel) {
  const barrier = uid('barrier');
  A.echo.channel(barrier);
  await waitSubscriptions(srv, barrier, 1);
  const n = uid('n');
  await redis.publish(`${prefix}${channel}`, laravelPayload('Sentinel', { n }));
  await B.next((a) => a[0] === 'Sentinel' && a[1] === channel && a[2]?.n === n, 5000, 'the sentinel after the whispers');
}

async function poll(eio, { origin = 'http://app.test', sid, method = 'GET', body } = {}) {
  const q = `EIO=${eio}&transport=polling&t=${Date.now().toString(36)}${sid ? `&sid=${sid}` : ''}`;
  const res = await fetch(`${server.httpUrl}/socket.io/?${q}`, {
    method,
    headers: { Origin: origin, ...(body ? { 'Content-Type': 'text/plain;charset=UTF-8' } : {}) },
    body,
    signal: AbortSignal.timeout(30000),
  });
  return { status: res.status, headers: res.headers, text: await res.text() };
}

/** Parse an EIO3 polling payload `<len>:<packet><len>:<packet>…` (len in UTF-16 code units). */
function parseEio3(payload) {
  const out = [];
  let i = 0;
  while (i < payload.length) {
    const colon = payload.indexOf(':', i);
    assert.ok(colon > i, `length prefix at ${i} in ${JSON.stringify(payload.slice(0, 200))}`);
    const len = Number(payload.slice(i, colon));
    assert.ok(Number.isInteger(len), `numeric length in ${JSON.stringify(payload.slice(i, colon + 1))}`);
    out.push(payload.slice(colon + 1, colon + 1 + len)); // JS string indices are UTF-16 code units
    i = colon + 1 + len;
  }
  return out;
}

test('EIO=3 polling handshake: framed open packet, then 40; CORS echoes the Origin with credentials', async () => {
  const r = await poll(3);
  assert.equal(r.status, 200, r.text);
  assert.equal(r.headers.get('access-control-allow-origin'), 'http://app.test');
  assert.equal(r.headers.get('access-control-allow-credentials'), 'true');
  const packets = parseEio3(r.text);
  assert.equal(packets[0][0], '0', `first packet is OPEN: ${r.text}`);
  const open = JSON.parse(packets[0].slice(1));
  assert.equal(typeof open.sid, 'string');
  assert.deepEqual(open.upgrades, ['websocket']);
  assert.equal(typeof open.pingInterval, 'number');
  assert.equal(typeof open.pingTimeout, 'number');
  let rest = packets.slice(1);
  if (!rest.length) {
    const r2 = await poll(3, { sid: open.sid });
    assert.equal(r2.status, 200, r2.text);
    rest = parseEio3(r2.text);
  }
  assert.equal(rest[0], '40', `the server connects namespace / by itself for EIO3 (got ${JSON.stringify(rest)})`);
  const pre = await fetch(`${server.httpUrl}/socket.io/?EIO=3&transport=polling&sid=${open.sid}`, {
    method: 'OPTIONS',
    headers: { Origin: 'http://app.test', 'Access-Control-Request-Method': 'POST', 'Access-Control-Request-Headers': 'content-type' },
  });
  assert.equal(pre.status, 200, 'CORS preflight');
  assert.equal(pre.headers.get('access-control-allow-origin'), 'http://app.test');
});

test('EIO=4 polling handshake: open packet, then the client CONNECT gets 40{"sid"}', async () => {
  const r = await poll(4);
  assert.equal(r.status, 200, r.text);
  assert.equal(r.headers.get('access-control-allow-origin'), 'http://app.test');
  assert.equal(r.text[0], '0');
  const open = JSON.parse(r.text.slice(1));
  const c = await poll(4, { sid: open.sid, method: 'POST', body: '40{"headers":{}}' });
  assert.equal(c.status, 200, c.text);
  const r2 = await poll(4, { sid: open.sid });
  const packets = r2.text.split('\x1e'); // EIO4 polling payloads are separated by U+001E
  assert.ok(packets.some((p) => /^40\{"sid":"[^"]+"\}$/.test(p)), `CONNECT answer 40{"sid":..} (got ${JSON.stringify(r2.text)})`);
});

test('socket.io 2.x polling: non-ASCII and astral-plane data survive EIO3 length framing, in order, several per poll', async () => {
  const channel = uid('intl');
  const sio = await SioClient.connect(server, { version: 2, transports: ['polling'] });
  const got = capture('intl listen');
  sio.echo.channel(channel).listen('OrderShipped', got.cb);
  await waitSubscriptions(server, channel, 1);
  const texts = ['héllo', '😀 emoji', '日本語テキスト', '∑ 𝄞 music', 'ascii'];
  for (let i = 0; i < texts.length; i++) {
    await redis.publish(`${PREFIX}${channel}`, laravelPayload(LARAVEL_EVENT, { i, text: texts[i] }));
  }
  await got.nth(texts.length);
  assert.deepEqual(got.calls.map(([d]) => d), texts.map((text, i) => ({ i, text })));
  assert.equal(sio.isConnected, true);
});

test('allowed_origins applies to /socket.io/ (websocket and polling, 2.x and 4.x)', async () => {
  const s = await h.startServer({ redis, prefix: 'origins_', env: { RESONANCE_APP_ALLOWED_ORIGINS: 'http://app.test' } });
  try {
    for (const version of [2, 4]) {
      for (const transports of [['websocket'], ['polling']]) {
        const ok = await SioClient.connect(s, { version, transports, headers: { Origin: 'http://app.test' } });
        assert.equal(ok.isConnected, true);
        ok.disconnect();
        const bad = new SioClient(s, { version, transports, headers: { Origin: 'http://evil.test' } });
        let connected = false;
        bad.socket.on('connect', () => (connected = true));
        // No fixed wait: the refusal itself is the positive signal (reconnection is off).
        await waitUntil(() => bad.connectErrors.length > 0 || bad.disconnectReason, 5000,
          `socket.io ${version}.x ${transports} from a foreign Origin: connect_error or disconnect`);
        assert.equal(connected || bad.isConnected, false, `socket.io ${version}.x ${transports} from a foreign Origin must be refused`);
        bad.disconnect();
      }
    }
  } finally {
    await s.stop();
  }
});

test('whisper rate limit applies to Socket.IO senders; the connection survives it', async () => {
  const name = uid('chat');
  const channel = `private-${name}`;
  const A = await SioClient.connect(server, { version: 4, cookie: 'laravel_session=7' });
  const B = await SioClient.connect(server, { version: 2, cookie: 'laravel_session=8' });
  const aCh = A.echo.private(name);
  const got = capture('B whispers');
  B.echo.private(name).listenForWhisper('typing', got.cb);
  await waitSubscriptions(server, channel, 2);
  for (let i = 0; i < 40; i++) aCh.whisper('typing', { i });
  await afterWhispers(server, PREFIX, A, B, channel);
  const n = got.calls.length;
  assert.ok(n >= 1 && n <= 20, `40 whispers sent at once with client_event_rate=10/s: delivered ${n} (expected about 10, at most 20)`);
  // The rate window is a fixed 1 s (core/rules.rs RateLimit): instead of sleeping past it, whisper
  // every 100 ms until one gets through.
  let tries = 0;
  await waitUntil(
    () => {
      aCh.whisper('typing', { after: ++tries });
      return B.all((a) => a[0] === 'client-typing' && a[2] && a[2].after).length > 0;
    },
    5000,
    () => `a whisper getting through after the rate window (${tries} tries)`,
    100,
  );
  assert.equal(A.isConnected, true);
});

test('client_events disabled for the app → Socket.IO whispers are not delivered', async () => {
  const a2 = await h.startAuth();
  const s = await h.startServer({ redis, prefix: 'noclient_', auth: a2, env: { RESONANCE_APP_CLIENT_EVENTS: 'false' } });
  try {
    const name = uid('chat');
    const A = await SioClient.connect(s, { version: 2, cookie: 'laravel_session=7' });
    const B = await SioClient.connect(s, { version: 4, cookie: 'laravel_session=8' });
    const aCh = A.echo.private(name);
    B.echo.private(name);
    await waitSubscriptions(s, `private-${name}`, 2);
    await waitIngestion(redis, 'noclient_');
    aCh.whisper('typing', { x: 1 });
    await afterWhispers(s, 'noclient_', A, B, `private-${name}`);
    assert.equal(B.count('client-typing'), 0, 'whisper dropped');
    assert.equal(A.isConnected && B.isConnected, true);
  } finally {
    await s.stop();
  }
});

test('garbage subscribe / unsubscribe / client event payloads do not break the socket or the server', async () => {
  const sio = await SioClient.connect(server, { version: 4 });
  const sio2 = await SioClient.connect(server, { version: 2 });
  for (const s of [sio, sio2]) {
    s.socket.emit('subscribe');
    s.socket.emit('subscribe', 'orders');
    s.socket.emit('subscribe', {});
    s.socket.emit('subscribe', { channel: 42 });
    s.socket.emit('subscribe', { channel: '' });
    s.socket.emit('subscribe', { channel: 'bad name with spaces' });
    s.socket.emit('subscribe', { channel: 'x'.repeat(1000) });
    s.socket.emit('subscribe', { channel: 'private-orders', auth: 'not an object' });
    s.socket.emit('subscribe', { channel: 'private-orders', auth: { headers: 'nope' } });
    s.socket.emit('unsubscribe', { channel: 'never-subscribed' });
    s.socket.emit('unsubscribe', null);
    s.socket.emit('client event', {});
    s.socket.emit('client event', { channel: 'private-x', event: 'client-x' });
    s.socket.emit('client event', 'junk');
    s.socket.emit('some unknown event', { a: 1 });
    s.socket.emit('subscribe', { channel: 'orders' }, 'extra', 'args');
  }
  const channel = uid('orders');
  const got = capture('after garbage');
  const got2 = capture('after garbage 2.x');
  sio.echo.channel(channel).listen('OrderShipped', got.cb);
  sio2.echo.channel(channel).listen('OrderShipped', got2.cb);
  await waitSubscriptions(server, channel, 2);
  await redis.publish(`${PREFIX}${channel}`, laravelPayload(LARAVEL_EVENT, { id: 1 }));
  assert.deepEqual((await got.nth(1))[0], { id: 1 });
  assert.deepEqual((await got2.nth(1))[0], { id: 1 });
  assert.equal(sio.isConnected && sio2.isConnected, true);
  assert.equal(server.running, true);
  assert.equal((await server.get('/up')).status, 200);
  const errs = sio.all((a) => a[0] === 'subscription_error');
  for (const e of errs) assert.equal(typeof e[2], 'number', `subscription_error status is a number: ${JSON.stringify(e)}`);
});

test('SIGTERM with Socket.IO clients connected (long-poll pending, websocket): exits within shutdown_grace, clients are disconnected', async () => {
  const s = await h.startServer({ redis, prefix: 'shutdown_', env: { RESONANCE_SHUTDOWN_GRACE: '3' } });
  const clients = [
    await SioClient.connect(s, { version: 2, transports: ['polling'] }),
    await SioClient.connect(s, { version: 4, transports: ['polling'] }),
    await SioClient.connect(s, { version: 2 }),
    await SioClient.connect(s, { version: 4 }),
  ];
  const raw = await RawClient.connect(s);
  for (const c of clients) c.echo.channel('orders');
  await waitSubscriptions(s, 'orders', 4);
  const t0 = Date.now();
  s.signal('SIGTERM');
  const info = await withTimeout(s.exited, 8000, 'server exit after SIGTERM');
  const took = Date.now() - t0;
  assert.equal(info.code, 0, `clean exit code (got ${JSON.stringify(info)})`);
  assert.ok(took <= 4000, `exited within shutdown_grace=3s (+1s) — took ${took} ms`);
  await waitUntil(() => clients.every((c) => !c.isConnected), 5000, () => `all Socket.IO clients disconnected (${clients.map((c) => c.isConnected)})`);
  const close = await waitUntil(() => raw.closeInfo, 3000, 'raw Pusher client closed');
  assert.equal(close.code, 4200, 'Pusher clients still get 4200');
});

test('Echo reconnects after a server restart on the same port and re-subscribes (public and private)', async () => {
  const s1 = await h.startServer({ redis, prefix: 'restart_', auth });
  const port = s1.port;
  const pub = uid('orders');
  const name = uid('orders');
  const clients = [
    await SioClient.connect(s1, { version: 2, cookie: 'laravel_session=7', reconnection: true }),
    await SioClient.connect(s1, { version: 4, cookie: 'laravel_session=7', reconnection: true }),
  ];
  const gotPub = clients.map(() => capture('public after restart'));
  const gotPriv = clients.map(() => capture('private after restart'));
  clients.forEach((c, i) => {
    c.echo.channel(pub).listen('OrderShipped', gotPub[i].cb);
    c.echo.private(name).listen('OrderShipped', gotPriv[i].cb);
  });
  await waitSubscriptions(s1, `private-${name}`, 2);
  await s1.stop();
  await waitUntil(() => clients.every((c) => !c.isConnected), 5000, 'clients noticed the restart');
  const s2 = await h.startServer({ redis, prefix: 'restart_', auth, port });
  try {
    await waitIngestion(redis, 'restart_');
    await waitUntil(() => clients.every((c) => c.isConnected), 20000, () => `clients reconnected (${clients.map((c) => c.isConnected)}; errors ${clients.map((c) => c.connectErrors.slice(-1))})`);
    await waitSubscriptions(s2, pub, 2, 10000);
    await waitSubscriptions(s2, `private-${name}`, 2, 10000);
    await redis.publish(`restart_${pub}`, laravelPayload(LARAVEL_EVENT, { id: 1 }));
    await redis.publish(`restart_private-${name}`, laravelPayload(LARAVEL_EVENT, { id: 2 }));
    for (let i = 0; i < clients.length; i++) {
      assert.deepEqual((await gotPub[i].nth(1))[0], { id: 1 });
      assert.deepEqual((await gotPriv[i].nth(1))[0], { id: 2 });
    }
  } finally {
    await s2.stop();
  }
});

test('metrics expose the Redis ingestion state', async () => {
  const m = await server.get('/metrics');
  assert.equal(m.status, 200);
  assert.match(m.text, /resonance_redis_connected\{[^}]*app_id="515151"[^}]*\}\s+1\b/);
});
