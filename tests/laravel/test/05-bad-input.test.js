// 5. Bad input and failures: malformed Redis messages, auth endpoint slow / 302 / 500 /
//    dropping connections / not listening, and Redis going away and coming back.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import {
  useHarness, SioClient, RawClient, connectedPusher, pusherSubscribe, capture, waitSubscriptions, subscriptionCount,
  waitIngestion, waitUntil, laravelPayload, pusherTrigger, freePort, uid, sleep, LARAVEL_EVENT,
  AUTH_TIMEOUT_S, SLOW_AUTH_MS,
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

async function assertServerHealthy(s = server) {
  assert.equal(s.running, true, `server is running (exit: ${JSON.stringify(s.exitInfo)})`);
  const up = await s.get('/up');
  assert.equal(up.status, 200, '/up answers 200');
}

test('malformed Redis messages are dropped; the next good publish still arrives', async () => {
  const channel = uid('orders');
  const s2 = await SioClient.connect(server, { version: 2 });
  const s4 = await SioClient.connect(server, { version: 4 });
  s2.echo.channel(channel);
  s4.echo.channel(channel);
  const raw = await RawClient.connect(server);
  await raw.subscribe(channel);
  await waitSubscriptions(server, channel, 3);
  const key = `${PREFIX}${channel}`;
  const bad = [
    'not json',
    '',
    '{"event":',
    JSON.stringify({ data: { id: 1 }, socket: null }), // no event
    JSON.stringify({ event: null, data: { id: 1 } }),
    JSON.stringify({ event: 42, data: { id: 1 } }),
    JSON.stringify([1, 2, 3]),
    'null',
    '"just a string"',
    '\u00ff\ufffd\u0001 binary-ish',
  ];
  for (const b of bad) await redis.publish(key, b);
  await redis.publish(key, laravelPayload(LARAVEL_EVENT, { id: 5 }));
  assert.deepEqual(await s2.nextEvent(LARAVEL_EVENT, channel), [LARAVEL_EVENT, channel, { id: 5 }]);
  assert.deepEqual(await s4.nextEvent(LARAVEL_EVENT, channel), [LARAVEL_EVENT, channel, { id: 5 }]);
  const m = await raw.nextEvent(LARAVEL_EVENT, channel);
  assert.deepEqual(JSON.parse(m.data), { id: 5 });
  const junk = s2.all((a) => a[0] !== LARAVEL_EVENT);
  assert.ok(
    junk.length === 0,
    `no malformed message was forwarded as an event with a bogus name (got ${JSON.stringify(junk).slice(0, 300)})`,
  );
  assert.equal(s2.isConnected && s4.isConnected && raw.isOpen, true, 'clients still connected');
  await assertServerHealthy();
  // the Redis ingestion is still subscribed
  assert.ok((await redis.publish(`${PREFIX}probe`, laravelPayload('probe', {}))) >= 1, 'ingestion still PSUBSCRIBEd');
});

test('oversized Redis bodies (300 KB event name, 300 KB data) neither crash the server nor drop clients', async (t) => {
  const channel = uid('orders');
  const s2 = await SioClient.connect(server, { version: 2 });
  const s4 = await SioClient.connect(server, { version: 4 });
  s2.echo.channel(channel);
  s4.echo.channel(channel);
  const raw = await RawClient.connect(server);
  await raw.subscribe(channel);
  await waitSubscriptions(server, channel, 3);
  const key = `${PREFIX}${channel}`;
  await redis.publish(key, JSON.stringify({ event: 'x'.repeat(300000), data: {}, socket: null }));
  await redis.publish(key, JSON.stringify({ event: 'App\\Events\\Huge', data: { blob: 'y'.repeat(300000) }, socket: null }));
  await redis.publish(key, laravelPayload(LARAVEL_EVENT, { id: 5 }));
  await s2.nextEvent(LARAVEL_EVENT, channel);
  await s4.nextEvent(LARAVEL_EVENT, channel);
  await raw.nextEvent(LARAVEL_EVENT, channel);
  assert.equal(s2.isConnected && s4.isConnected && raw.isOpen, true, 'clients still connected');
  await assertServerHealthy();
  // not in the contract: report what the server did with them
  t.diagnostic(`socket.io 2.x received: ${JSON.stringify(s2.all().map((a) => [String(a[0]).slice(0, 20) + (String(a[0]).length > 20 ? `…(${String(a[0]).length})` : ''), JSON.stringify(a[2]).length]))}`);
  t.diagnostic(`raw Pusher received: ${JSON.stringify(raw.all((m) => m.channel === channel && !m.event.startsWith('pusher')).map((m) => [m.event.slice(0, 20) + (m.event.length > 20 ? `…(${m.event.length})` : ''), String(m.data).length]))}`);
});

const failures = [
  ['slow', 504, 'auth endpoint slower than auth_timeout'],
  ['redirect', 302, 'auth endpoint answers 302 to /login'],
  ['error', 500, 'auth endpoint answers 500'],
  ['down', 502, 'auth endpoint drops the TCP connection without an answer'],
];

for (const version of [2, 4]) {
  for (const [mode, status, what] of failures) {
    test(`socket.io ${version}.x: ${what} → subscription_error ${status}; the socket stays usable`, async () => {
      const sio = await SioClient.connect(server, { version, cookie: 'laravel_session=7' });
      const name = `${mode}-${uid('orders')}`;
      const channel = `private-${name}`;
      const errors = [];
      sio.socket.on('subscription_error', (ch, st) => errors.push([ch, st]));
      const t0 = Date.now();
      sio.echo.private(name);
      const frame = await sio.nextEvent('subscription_error', channel, 10000);
      const elapsed = Date.now() - t0;
      assert.equal(frame[1], channel);
      assert.equal(frame[2], status, `subscription_error status for "${mode}" (expected ${status}, got ${JSON.stringify(frame[2])})`);
      assert.deepEqual(errors, [[channel, status]]);
      if (mode === 'slow') {
        assert.ok(elapsed < SLOW_AUTH_MS, `the auth call is cut at auth_timeout=${AUTH_TIMEOUT_S}s (took ${elapsed} ms; endpoint sleeps ${SLOW_AUTH_MS} ms)`);
        assert.ok(elapsed >= AUTH_TIMEOUT_S * 1000 - 100, `not before the timeout (took ${elapsed} ms)`);
      }
      if (mode === 'redirect') {
        // A followed redirect would be part of the auth call, which ended
        // before the subscription_error above: no wait needed.
        assert.equal(auth.requests.filter((r) => r.path === '/login').length, 0, 'the 302 is not followed');
      }
      // the socket is still usable
      const pub = uid('public');
      const got = capture('public after failure');
      sio.echo.channel(pub).listen('OrderShipped', got.cb);
      await waitSubscriptions(server, pub, 1);
      await redis.publish(`${PREFIX}${pub}`, laravelPayload(LARAVEL_EVENT, { id: 1 }));
      assert.deepEqual((await got.nth(1))[0], { id: 1 });
      assert.equal(sio.isConnected, true);
      assert.equal(await subscriptionCount(server, channel), 0, `not subscribed to ${channel}`);
    });
  }
}

test('Pusher client without a signature: auth endpoint 500 → pusher:subscription_error status 500, connection stays', async () => {
  const raw = await RawClient.connect(server, { headers: { Cookie: 'laravel_session=7' } });
  const channel = `private-error-${uid('x')}`;
  const reply = await raw.subscribe(channel);
  assert.equal(reply.event, 'pusher:subscription_error', JSON.stringify(reply));
  assert.equal(reply.parsed.type, 'AuthError');
  assert.equal(reply.parsed.status, 500);
  assert.equal((await raw.ping()).event, 'pusher:pong');
});

test('auth endpoint not listening at all → subscription_error 502; the socket stays usable', async () => {
  const closedPort = await freePort();
  const s = await h.startServer({ redis, prefix: 'closed_auth_', auth: `http://127.0.0.1:${closedPort}/broadcasting/auth` });
  try {
    for (const version of [2, 4]) {
      const sio = await SioClient.connect(s, { version, cookie: 'laravel_session=7' });
      const name = uid('orders');
      sio.echo.private(name);
      const frame = await sio.nextEvent('subscription_error', `private-${name}`, 10000);
      assert.deepEqual(frame, ['subscription_error', `private-${name}`, 502], `socket.io ${version}.x: connection refused → 502`);
      const pub = uid('pub');
      sio.echo.channel(pub);
      await waitSubscriptions(s, pub, 1);
      await pusherTrigger(s, pub, 'Ping', { ok: 1 });
      assert.deepEqual(await sio.nextEvent('Ping', pub), ['Ping', pub, { ok: 1 }]);
      assert.equal(sio.isConnected, true);
    }
    await assertServerHealthy(s);
  } finally {
    await s.stop();
  }
});

test('many concurrent failing auth calls do not take the server down', async () => {
  const sio = await SioClient.connect(server, { version: 4, cookie: 'laravel_session=7' });
  const names = Array.from({ length: 80 }, () => `down-${uid('x')}`);
  for (const n of names) sio.echo.private(n);
  await waitUntil(() => sio.count('subscription_error') === names.length, 15000, `80 subscription_errors (got ${sio.count('subscription_error')})`);
  assert.ok(sio.all((a) => a[0] === 'subscription_error').every((a) => a[2] === 502));
  await assertServerHealthy();
});

test('auth calls are bounded: at most 64 in flight, and the wait for a slot counts within auth_timeout (every subscription answered in time)', async () => {
  const sio = await SioClient.connect(server, { version: 2, cookie: 'laravel_session=7' });
  const names = Array.from({ length: 100 }, () => `slow-${uid('x')}`);
  auth.stats.maxInflight = auth.stats.inflight;
  const t0 = Date.now();
  for (const n of names) sio.echo.private(n);
  await waitUntil(() => sio.count('subscription_error') === names.length, 20000, () => `100 subscription_errors (got ${sio.count('subscription_error')})`);
  const elapsed = Date.now() - t0;
  assert.ok(sio.all((a) => a[0] === 'subscription_error').every((a) => a[2] === 504), 'all timed out (504)');
  assert.ok(auth.stats.maxInflight <= 64, `at most 64 concurrent auth calls (saw ${auth.stats.maxInflight})`);
  assert.ok(auth.stats.maxInflight >= 8, `calls do run concurrently (saw at most ${auth.stats.maxInflight} at once)`);
  // 36 of them never got a slot: they are answered at the same deadline,
  // not after a second round of calls.
  assert.ok(elapsed >= AUTH_TIMEOUT_S * 1000 - 200, `not before auth_timeout (took ${elapsed} ms)`);
  assert.ok(elapsed < 2 * AUTH_TIMEOUT_S * 1000 - 200, `waiting for a slot is part of auth_timeout=${AUTH_TIMEOUT_S}s (took ${elapsed} ms)`);
  assert.equal(sio.isConnected, true);
  await assertServerHealthy();
});

test('redis-server killed and restarted: clients stay served, /ready stays 200 and reports the ingestion down then up, exactly one delivery after the restart', async () => {
  const channel = uid('orders');
  const s2 = await SioClient.connect(server, { version: 2 });
  const s4 = await SioClient.connect(server, { version: 4 });
  s2.echo.channel(channel);
  s4.echo.channel(channel);
  const p = await connectedPusher(server);
  const pch = await pusherSubscribe(p, channel);
  const pGot = capture('pusher-js');
  pch.bind_global((ev, d) => !ev.startsWith('pusher') && pGot.cb(ev, d));
  await waitSubscriptions(server, channel, 3);

  const ready0 = await server.get('/ready');
  assert.equal(ready0.status, 200, `/ready before: ${ready0.status} ${ready0.text}`);
  assert.equal(ready0.json?.redis_ingestion?.['515151'], 'connected', ready0.text);
  assert.equal(ready0.json?.degraded, false, ready0.text);
  const metrics0 = await server.get('/metrics');
  assert.match(metrics0.text, /resonance_redis_connected\{[^}]*app_id="515151"[^}]*\}\s+1\b/, 'metric resonance_redis_connected 1');

  await redis.kill();
  // The node still serves its clients, so it stays in the load balancer
  // (200); the dependency shows in the body and in /metrics.
  const down = await waitUntil(async () => {
    const r = await server.get('/ready');
    return r.json?.redis_ingestion?.['515151'] === 'unavailable' ? r : null;
  }, 10000, '/ready reports the ingestion unavailable while Redis is down');
  assert.equal(down.status, 200, `/ready status while Redis is down: ${down.text}`);
  assert.equal(down.json?.status, 'ready', down.text);
  assert.equal(down.json?.degraded, true, down.text);
  const metrics1 = await server.get('/metrics');
  assert.match(metrics1.text, /resonance_redis_connected\{[^}]*app_id="515151"[^}]*\}\s+0\b/, 'metric resonance_redis_connected 0 while down');

  // still serving the connected clients (HTTP API publish) and accepting new ones
  await pusherTrigger(server, channel, 'DuringOutage', { n: 1 });
  assert.deepEqual(await s2.nextEvent('DuringOutage', channel), ['DuringOutage', channel, { n: 1 }]);
  assert.deepEqual(await s4.nextEvent('DuringOutage', channel), ['DuringOutage', channel, { n: 1 }]);
  await pGot.nth(1);
  const late = await SioClient.connect(server, { version: 4 });
  late.echo.channel(channel);
  await waitSubscriptions(server, channel, 4);
  assert.equal(server.running, true);
  assert.equal((await server.get('/up')).status, 200, '/up stays 200 (liveness) while Redis is down');

  // Redis back on the same port
  await redis.start();
  await waitUntil(async () => (await server.get('/ready')).json?.redis_ingestion?.['515151'] === 'connected', 20000, '/ready reports the ingestion connected after Redis is back');
  await waitUntil(async () => (await redis.numpat()) >= 1, 10000, 'the server PSUBSCRIBEs again');
  const receivers = await redis.publish(`${PREFIX}${channel}`, laravelPayload(LARAVEL_EVENT, { id: 55 }));
  assert.equal(receivers, 1, 'exactly one Redis subscription receives the publish (no duplicate subscriber)');
  for (const c of [s2, s4, late]) assert.deepEqual(await c.nextEvent(LARAVEL_EVENT, channel), [LARAVEL_EVENT, channel, { id: 55 }]);
  await redis.publish(`${PREFIX}${channel}`, laravelPayload('Barrier', {}));
  for (const c of [s2, s4, late]) await c.nextEvent('Barrier', channel);
  await pGot.nth(3); // the Barrier: anything published before it has arrived
  for (const c of [s2, s4, late]) assert.equal(c.count(LARAVEL_EVENT, channel), 1, `socket.io ${c.version}.x got the post-restart event exactly once`);
  assert.deepEqual(pGot.calls.map(([ev]) => ev), ['DuringOutage', LARAVEL_EVENT, 'Barrier'], 'pusher-js: each event exactly once');
  assert.equal(s2.isConnected && s4.isConnected, true, 'clients connected through the outage');
  const metrics2 = await server.get('/metrics');
  assert.match(metrics2.text, /resonance_redis_connected\{[^}]*app_id="515151"[^}]*\}\s+1\b/, 'metric back to 1');
});

test('server survived everything (no panic in the log)', async () => {
  await assertServerHealthy();
  assert.ok(!/panicked at/.test(server.lines.join('\n')), `panic in log:\n${server.logTail(20)}`);
});
