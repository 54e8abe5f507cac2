// 2. Private channels authorised by the server calling the app's /broadcasting/auth
//    (Laravel session cookie or bearer token), then fed by Redis.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import {
  useHarness, SioClient, RawClient, capture, waitSubscriptions, subscriptionCount, waitIngestion, laravelPayload,
  uid, LARAVEL_EVENT,
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

const publish = (channel, data = { id: 5 }, event = LARAVEL_EVENT) => redis.publish(`${PREFIX}${channel}`, laravelPayload(event, data));

function subscriptionErrors(sio) {
  const errors = [];
  sio.socket.on('subscription_error', (channel, status) => errors.push([channel, status]));
  return errors;
}

/** Assert the auth request the server made looks like laravel-echo-server's, per the contract. */
function assertAuthRequest(req, { channel, cookie, sio, extraHeaders = {} }) {
  assert.equal(req.method, 'POST');
  assert.equal(req.path, '/broadcasting/auth');
  assert.match(String(req.headers['content-type']), /^application\/x-www-form-urlencoded/, 'Content-Type');
  assert.equal(req.form.channel_name, channel, 'body channel_name');
  assert.ok(req.form.socket_id, `body carries socket_id (body: ${req.body})`);
  if (sio) assert.equal(req.form.socket_id, sio.id, 'socket_id is the id Echo reports (echo.socketId(), what Laravel gets as X-Socket-ID)');
  assert.equal(req.headers['x-requested-with'], 'XMLHttpRequest', 'X-Requested-With');
  if (cookie !== undefined) assert.equal(req.headers.cookie, cookie, 'Cookie forwarded');
  for (const [k, v] of Object.entries(extraHeaders)) assert.equal(req.headers[k.toLowerCase()], v, `header ${k} forwarded verbatim`);
}

for (const version of [2, 4]) {
  test(`socket.io ${version}.x: handshake Cookie (extraHeaders) authorises a private channel; Redis events arrive`, async () => {
    const name = uid('orders');
    const channel = `private-${name}`;
    const sio = await SioClient.connect(server, { version, cookie: 'laravel_session=7; XSRF-TOKEN=abc' });
    const errors = subscriptionErrors(sio);
    const got = capture('Echo private listen');
    sio.echo.private(name).listen('OrderShipped', got.cb);
    const req = await auth.waitFor(channel);
    assertAuthRequest(req, { channel, cookie: 'laravel_session=7; XSRF-TOKEN=abc', sio });
    assert.equal(req.user, '7');
    await waitSubscriptions(server, channel, 1);
    await publish(channel, { id: 5 });
    assert.deepEqual((await got.nth(1))[0], { id: 5 });
    assert.deepEqual(sio.all(), [[LARAVEL_EVENT, channel, { id: 5 }]], 'only the event: no frame on a successful private subscribe');
    assert.deepEqual(errors, []);
  });

  test(`socket.io ${version}.x: Echo auth.headers (Cookie, X-CSRF-TOKEN, custom) are sent to the auth endpoint verbatim`, async () => {
    const name = uid('orders');
    const channel = `private-${name}`;
    const sio = await SioClient.connect(server, {
      version,
      authHeaders: { Cookie: 'laravel_session=8', 'X-App-Tenant': 'acme' },
      csrfToken: 'csrf-token-123',
    });
    const got = capture('Echo private listen');
    sio.echo.private(name).listen('.App\\Events\\OrderShipped', got.cb);
    const req = await auth.waitFor(channel);
    assertAuthRequest(req, {
      channel,
      cookie: 'laravel_session=8',
      sio,
      extraHeaders: { 'X-CSRF-TOKEN': 'csrf-token-123', 'X-App-Tenant': 'acme' },
    });
    await waitSubscriptions(server, channel, 1);
    await publish(channel, { id: 6 });
    assert.deepEqual((await got.nth(1))[0], { id: 6 });
  });

  test(`socket.io ${version}.x: auth.headers.Cookie wins over the handshake Cookie`, async () => {
    const name = uid('orders');
    const channel = `private-${name}`;
    const sio = await SioClient.connect(server, { version, cookie: 'laravel_session=7', authHeaders: { Cookie: 'laravel_session=8' } });
    sio.echo.private(name);
    const req = await auth.waitFor(channel);
    assert.equal(req.headers.cookie, 'laravel_session=8', 'Cookie from the subscribe payload auth.headers');
    assert.equal(req.user, '8');
  });

  test(`socket.io ${version}.x: Echo bearerToken → Authorization: Bearer forwarded and accepted`, async () => {
    const name = uid('orders');
    const channel = `private-${name}`;
    const sio = await SioClient.connect(server, { version, bearerToken: '9' });
    const got = capture('Echo private listen');
    sio.echo.private(name).listen('OrderShipped', got.cb);
    const req = await auth.waitFor(channel);
    assert.equal(req.headers.authorization, 'Bearer 9');
    assert.equal(req.status, 200);
    await waitSubscriptions(server, channel, 1);
    await publish(channel, { id: 7 });
    assert.deepEqual((await got.nth(1))[0], { id: 7 });
  });

  test(`socket.io ${version}.x: without a cookie → subscription_error 403, no events, socket stays usable`, async () => {
    const name = uid('orders');
    const channel = `private-${name}`;
    const sio = await SioClient.connect(server, { version });
    const errors = subscriptionErrors(sio);
    const got = capture('Echo private listen (must not fire)');
    sio.echo.private(name).listen('OrderShipped', got.cb);
    const frame = await sio.nextEvent('subscription_error');
    assert.deepEqual(frame, ['subscription_error', channel, 403], 'wire frame 42["subscription_error","<channel>",403]');
    assert.deepEqual(errors, [[channel, 403]], "socket.on('subscription_error', (channel, status))");
    const req = auth.forChannel(channel)[0];
    assert.ok(req, 'the auth endpoint was asked');
    assert.equal(req.status, 403);
    assert.equal(req.headers.cookie, undefined, 'no Cookie sent when the client has none');
    await publish(channel, { id: 1 });

    // still usable: a public channel on the same socket gets events
    const pub = uid('public');
    const pubGot = capture('public listen');
    sio.echo.channel(pub).listen('OrderShipped', pubGot.cb);
    await waitSubscriptions(server, pub, 1);
    // Sentinel: published after the event on the refused channel, through the same Redis
    // connection and to the same socket, so it arrives after anything that event could cause.
    await publish(pub, { id: 2 });
    assert.deepEqual((await pubGot.nth(1))[0], { id: 2 });
    assert.equal(got.calls.length, 0, 'the refused private channel delivered nothing');
    assert.equal(await subscriptionCount(server, channel), 0, 'not subscribed');
    assert.equal(sio.isConnected, true);
  });
}

test('socket.io 2.x polling transport: handshake cookie authorises a private channel', async () => {
  const name = uid('orders');
  const channel = `private-${name}`;
  const sio = await SioClient.connect(server, { version: 2, transports: ['polling'], cookie: 'laravel_session=3' });
  const got = capture('private listen');
  sio.echo.private(name).listen('OrderShipped', got.cb);
  const req = await auth.waitFor(channel);
  assertAuthRequest(req, { channel, cookie: 'laravel_session=3', sio });
  await waitSubscriptions(server, channel, 1);
  await publish(channel, { id: 3 });
  assert.deepEqual((await got.nth(1))[0], { id: 3 });
});

test('forbidden (403 with a user) and a later successful subscribe on the same socket', async () => {
  const sio = await SioClient.connect(server, { version: 4, cookie: 'laravel_session=7' });
  const bad = `private-forbidden-${uid('x')}`;
  sio.echo.private(bad.slice('private-'.length));
  assert.deepEqual(await sio.nextEvent('subscription_error'), ['subscription_error', bad, 403]);
  const okName = uid('orders');
  const got = capture('ok listen');
  sio.echo.private(okName).listen('OrderShipped', got.cb);
  await waitSubscriptions(server, `private-${okName}`, 1);
  await publish(`private-${okName}`, { id: 4 });
  assert.deepEqual((await got.nth(1))[0], { id: 4 });
});

test('Pusher client subscribing without an auth signature is authorised by the server with the WebSocket handshake Cookie', async () => {
  const channel = `private-${uid('orders')}`;
  const raw = await RawClient.connect(server, { headers: { Cookie: 'laravel_session=7' } });
  const reply = await raw.subscribe(channel);
  assert.equal(reply.event, 'pusher_internal:subscription_succeeded', `reply: ${JSON.stringify(reply)}`);
  const req = auth.forChannel(channel)[0];
  assert.ok(req, 'the server called the auth endpoint');
  assert.equal(req.form.socket_id, raw.socketId, 'socket_id is the Pusher socket id');
  assert.equal(req.headers.cookie, 'laravel_session=7');
  assert.equal(req.headers['x-requested-with'], 'XMLHttpRequest');
  await publish(channel, { id: 11 });
  const m = await raw.nextEvent(LARAVEL_EVENT, channel);
  assert.deepEqual(JSON.parse(m.data), { id: 11 });

  const raw2 = await RawClient.connect(server);
  const channel2 = `private-${uid('orders')}`;
  const reply2 = await raw2.subscribe(channel2);
  assert.equal(reply2.event, 'pusher:subscription_error', `no cookie → refused (reply: ${JSON.stringify(reply2)})`);
  assert.equal(reply2.parsed.type, 'AuthError');
  assert.equal(reply2.parsed.status, 403);
  const pong = await raw2.ping();
  assert.equal(pong.event, 'pusher:pong', 'connection stays up');
});

test('socket.io: without an auth endpoint, private / presence / encrypted / #server-to-user-* subscriptions are refused (403)', async () => {
  const plain = await h.startServer({ redis: null, auth: null });
  const sio = await SioClient.connect(plain, { version: 4 });
  for (const channel of [`private-${uid('a')}`, `presence-${uid('b')}`, `private-encrypted-${uid('c')}`, '#server-to-user-1']) {
    sio.socket.emit('subscribe', { channel, auth: { headers: {} } });
    assert.deepEqual(await sio.nextEvent('subscription_error'), ['subscription_error', channel, 403], channel);
    assert.equal(await subscriptionCount(plain, channel), 0, `${channel} not subscribed`);
  }
  assert.equal(sio.isConnected, true);
});

test('socket.io: #server-to-user-* is refused even with an auth endpoint, which is not asked', async () => {
  const sio = await SioClient.connect(server, { version: 4, cookie: 'laravel_session=1' });
  const channel = '#server-to-user-1';
  sio.socket.emit('subscribe', { channel, auth: { headers: {} } });
  assert.deepEqual(await sio.nextEvent('subscription_error'), ['subscription_error', channel, 403]);
  assert.equal(auth.forChannel(channel).length, 0, 'the auth endpoint was not asked');
});
