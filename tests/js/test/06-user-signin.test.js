// 6. user authentication: pusher-js userAuthentication + signin(), then the server-to-user channel.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import {
  useHarness, connectedPusher, trigger, Recorder, RawClient, uid, waitUntil, signUser,
} from '../lib/harness.js';

const h = useHarness();
let server, auth;
before(async () => {
  server = await h.startServer();
  auth = await h.startAuth(server.app);
});

/** Connected, signed-in pusher-js client whose #server-to-user channel is subscribed. */
async function signedIn(userId) {
  const p = await connectedPusher(server, auth, { user: userId });
  p.signin();
  await waitUntil(
    () => p.user.user_data && p.user.serverToUserChannel && p.user.serverToUserChannel.subscribed,
    5000,
    `user ${userId} signed in and subscribed to #server-to-user-${userId}`,
  );
  return p;
}

test('pusher-js signin(): pusher:signin_success, user_data, and #server-to-user channel subscribed', async () => {
  const p = await signedIn('7');
  assert.equal(p.user.user_data.id, '7');
  assert.deepEqual(p.user.user_data.user_info, { name: 'Grace' });
  assert.equal(p.user.serverToUserChannel.name, '#server-to-user-7');
  const req = auth.requests.find((r) => r.path === '/broadcasting/user-auth' && r.form.socket_id === p.connection.socket_id);
  assert.ok(req, 'pusher-js called the user authentication endpoint');
});

test('trigger on #server-to-user-{id} reaches that user only', async () => {
  const [u7, u8] = await Promise.all([signedIn('7'), signedIn('8')]);
  const rec7 = new Recorder(u7.user, ['notice', 'sentinel']);
  const rec8 = new Recorder(u8.user, ['notice', 'sentinel']);
  await trigger(server, '#server-to-user-7', 'notice', { text: 'for seven' });
  const got = await rec7.waitFor('notice');
  assert.deepEqual(got.data, { text: 'for seven' });
  await trigger(server, '#server-to-user-8', 'sentinel', {});
  await rec8.waitFor('sentinel');
  assert.equal(rec8.of('notice').length, 0, 'user 8 received a message for user 7');
  assert.equal(rec7.of('sentinel').length, 0, 'user 7 received a message for user 8');
});

test('all connections of a signed-in user receive the server-to-user event', async () => {
  const [a, b] = await Promise.all([signedIn('7'), signedIn('7')]);
  const ra = new Recorder(a.user, ['hello']);
  const rb = new Recorder(b.user, ['hello']);
  await trigger(server, '#server-to-user-7', 'hello', { n: 1 });
  await ra.waitFor('hello');
  await rb.waitFor('hello');
});

test('a raw client that is not signed in cannot subscribe to #server-to-user-X', async () => {
  const c = await RawClient.connect(server);
  const reply = await c.subscribe('#server-to-user-7');
  assert.notEqual(reply.event, 'pusher_internal:subscription_succeeded', 'subscribed without signin');
  assert.equal(reply.event, 'pusher:subscription_error', `got ${reply.event} ${reply.data}`);
  assert.ok(c.isOpen, 'connection stays open');
  const sentinel = uid('sentinel');
  await c.subscribeOk(sentinel);
  await trigger(server, '#server-to-user-7', 'secret', {});
  await trigger(server, sentinel, 'sentinel', {});
  await c.nextEvent('sentinel', sentinel);
  assert.equal(c.all((m) => m.event === 'secret').length, 0, 'leaked server-to-user event');
});

test('a client signed in as another user cannot subscribe to #server-to-user-X', async () => {
  const c = await RawClient.connect(server);
  const ok = await c.signin('8');
  assert.equal(JSON.parse(ok.parsed.user_data).id, '8');
  const reply = await c.subscribe('#server-to-user-7');
  assert.equal(reply.event, 'pusher:subscription_error', `got ${reply.event} ${reply.data}`);
  const own = await c.subscribe('#server-to-user-8');
  assert.equal(own.event, 'pusher_internal:subscription_succeeded');
});

test('signin with a forged signature does not sign the connection in', async () => {
  const c = await RawClient.connect(server);
  const userData = JSON.stringify({ id: '7' });
  const bad = signUser({ key: server.app.key, secret: 'wrong' }, c.socketId, userData);
  c.send({ event: 'pusher:signin', data: { auth: bad, user_data: userData } });
  // Sentinel: the server answers one connection's messages in order, so the pong (or the close)
  // comes after any signin_success the forged signin could have caused.
  await Promise.race([c.ping().catch(() => {}), c.closed]);
  assert.equal(c.all((m) => m.event === 'pusher:signin_success').length, 0, 'forged signin was accepted');
  if (c.isOpen) {
    c.skipAll();
    const sub = await c.subscribe('#server-to-user-7');
    assert.equal(sub.event, 'pusher:subscription_error');
  }
});
