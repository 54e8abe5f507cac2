// 8. The bridge configured per app in TOML (several apps; the first socketio app owns
//    /socket.io/), Redis with a password, and a server started while Redis is down.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import {
  useHarness, SioClient, connectedPusher, pusherSubscribe, capture, waitSubscriptions, waitIngestion,
  waitUntil, laravelPayload, startRedis, RedisProcess, freePort, uid, sleep, LARAVEL_EVENT,
} from '../lib/harness.js';

const h = useHarness();
let redis, auth;

before(async () => {
  redis = await h.redis();
  auth = await h.startAuth();
});

test('TOML: several apps; the first app with socketio = true owns /socket.io/ and its Redis prefix and auth endpoint', async () => {
  const other = await h.startAuth();
  const apps = [
    { id: '111111', key: 'key-one', secret: 'secret-one', redis_url: redis.url, redis_prefix: 'one_', socketio: false },
    { id: '222222', key: 'key-two', secret: 'secret-two', redis_url: redis.url, redis_prefix: 'two_', auth_endpoint: auth.endpoint, auth_timeout: 2, socketio: true },
    { id: '333333', key: 'key-three', secret: 'secret-three', redis_url: redis.url, redis_prefix: 'three_', auth_endpoint: other.endpoint, socketio: true },
  ];
  const s = await h.startTomlServer({ apps }, { apiApp: apps[1] });
  try {
    await waitIngestion(redis, 'one_');
    await waitIngestion(redis, 'two_');
    await waitIngestion(redis, 'three_');
    const channel = uid('orders');
    const sio2 = await SioClient.connect(s, { version: 2 });
    const sio4 = await SioClient.connect(s, { version: 4 });
    sio2.echo.channel(channel);
    sio4.echo.channel(channel);
    const pOne = await connectedPusher(s, { app: apps[0] });
    const pTwo = await connectedPusher(s, { app: apps[1] });
    const pThree = await connectedPusher(s, { app: apps[2] });
    const caps = {};
    for (const [name, p] of [['one', pOne], ['two', pTwo], ['three', pThree]]) {
      const ch = await pusherSubscribe(p, channel);
      caps[name] = capture(`pusher-js app ${name}`);
      ch.bind_global((ev, d) => !ev.startsWith('pusher') && caps[name].cb(ev, d));
    }
    await waitSubscriptions(s, channel, 3); // app two: two Socket.IO + one pusher-js

    await redis.publish(`one_${channel}`, laravelPayload('App\\Events\\One', { app: 1 }));
    await redis.publish(`three_${channel}`, laravelPayload('App\\Events\\Three', { app: 3 }));
    await redis.publish(`two_${channel}`, laravelPayload('App\\Events\\Two', { app: 2 }));
    assert.deepEqual(await sio2.nextEvent('App\\Events\\Two', channel), ['App\\Events\\Two', channel, { app: 2 }]);
    assert.deepEqual(await sio4.nextEvent('App\\Events\\Two', channel), ['App\\Events\\Two', channel, { app: 2 }]);
    assert.deepEqual((await caps.two.nth(1)), ['App\\Events\\Two', { app: 2 }]);
    assert.deepEqual((await caps.one.nth(1)), ['App\\Events\\One', { app: 1 }], 'app one gets its own prefix');
    assert.deepEqual((await caps.three.nth(1)), ['App\\Events\\Three', { app: 3 }], 'app three gets its own prefix');
    // Sentinels through each app's own ingestion: once they arrived, a
    // misrouted One/Three would have reached the Socket.IO clients too.
    await redis.publish(`one_${channel}`, laravelPayload('Barrier', {}));
    await redis.publish(`three_${channel}`, laravelPayload('Barrier', {}));
    assert.equal((await caps.one.nth(2))[0], 'Barrier');
    assert.equal((await caps.three.nth(2))[0], 'Barrier');
    assert.deepEqual(sio2.all().map((a) => a[0]), ['App\\Events\\Two'], 'Socket.IO clients belong to app two only');
    assert.deepEqual(sio4.all().map((a) => a[0]), ['App\\Events\\Two']);
    assert.equal(caps.one.calls.length, 2);
    assert.equal(caps.three.calls.length, 2);

    // Socket.IO private auth uses app two's endpoint
    const name = uid('orders');
    const priv = await SioClient.connect(s, { version: 4, cookie: 'laravel_session=7' });
    priv.echo.private(name);
    await auth.waitFor(`private-${name}`);
    assert.equal(other.forChannel(`private-${name}`).length, 0, "app three's endpoint is not used");
  } finally {
    await s.stop();
  }
});

test('Redis with a password (redis_url redis://:pw@host:port/db)', async () => {
  const secured = await startRedis({ password: 'p@ss:w/rd' });
  try {
    const url = `redis://:${encodeURIComponent('p@ss:w/rd')}@127.0.0.1:${secured.port}/2`;
    const s = await h.startServer({ redis: { url }, prefix: 'laravel_database_' });
    try {
      await waitIngestion(secured, 'laravel_database_');
      const channel = uid('orders');
      const sio = await SioClient.connect(s, { version: 2 });
      sio.echo.channel(channel);
      await waitSubscriptions(s, channel, 1);
      await secured.publish(`laravel_database_${channel}`, laravelPayload(LARAVEL_EVENT, { id: 5 }));
      assert.deepEqual(await sio.nextEvent(LARAVEL_EVENT, channel), [LARAVEL_EVENT, channel, { id: 5 }]);
    } finally {
      await s.stop();
    }
  } finally {
    await secured.stop();
  }
});

test('a wrong Redis password: the server still serves, /ready stays 200 and reports the ingestion unavailable', async () => {
  const secured = await startRedis({ password: 'right' });
  try {
    const s = await h.startServer({ redis: { url: `redis://:wrong@127.0.0.1:${secured.port}/0` } });
    try {
      // Readiness is this node's ability to serve: a shared Redis failing
      // must not take every node out of the load balancer, so it shows in the body.
      const r = await waitUntil(async () => {
        const x = await s.get('/ready');
        return x.status === 200 && x.json?.degraded === true ? x : null;
      }, 10000, '/ready 200 degraded with a wrong Redis password');
      assert.equal(r.json?.status, 'ready', r.text);
      assert.deepEqual(Object.values(r.json?.redis_ingestion ?? {}), ['unavailable'], r.text);
      assert.match((await s.get('/metrics')).text, /resonance_redis_connected\{[^}]*\}\s+0\b/);
      assert.equal((await s.get('/up')).status, 200);
      const sio = await SioClient.connect(s, { version: 4 });
      assert.equal(sio.isConnected, true);
    } finally {
      await s.stop();
    }
  } finally {
    await secured.stop();
  }
});

test('server started while Redis is down: serves at once, /ready 200 degraded, then ingests once Redis appears', async () => {
  const port = await freePort();
  const later = new RedisProcess(port);
  const s = await h.startServer({ redis: later, prefix: 'late_' });
  try {
    assert.equal((await s.get('/up')).status, 200);
    const ready = await s.get('/ready');
    assert.equal(ready.status, 200, `/ready while Redis was never reachable: ${ready.status} ${ready.text}`);
    assert.equal(ready.json?.status, 'ready', ready.text);
    assert.equal(ready.json?.degraded, true, ready.text);
    assert.deepEqual(Object.values(ready.json?.redis_ingestion ?? {}), ['unavailable'], ready.text);
    const channel = uid('orders');
    const sio = await SioClient.connect(s, { version: 2 });
    sio.echo.channel(channel);
    await waitSubscriptions(s, channel, 1);
    await later.start();
    await waitUntil(async () => (await s.get('/ready')).json?.degraded === false, 20000, '/ready not degraded once Redis is up');
    await waitIngestion(later, 'late_', 10000);
    assert.equal(await later.publish(`late_${channel}`, laravelPayload(LARAVEL_EVENT, { id: 5 })), 1);
    assert.deepEqual(await sio.nextEvent(LARAVEL_EVENT, channel), [LARAVEL_EVENT, channel, { id: 5 }]);
  } finally {
    await s.stop();
    await later.stop();
  }
});
