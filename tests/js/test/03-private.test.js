// 3. private channels: authorized through the Laravel-style auth endpoint; refusals and forged
//    signatures give pusher:subscription_error and leave the connection usable.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import {
  useHarness, connectedPusher, subscribe, waitForEvent, trigger, RawClient, signChannel, hmacHex, uid,
} from '../lib/harness.js';

const h = useHarness();
let server, auth;
before(async () => {
  server = await h.startServer();
  auth = await h.startAuth(server.app);
});

test('private channel subscription through the auth endpoint succeeds and receives events', async () => {
  const channel = `private-${uid('orders')}`;
  const p = await connectedPusher(server, auth, { user: '1' });
  const ch = await subscribe(p, channel);
  const req = auth.requests.find((r) => r.form.channel_name === channel);
  assert.ok(req, 'pusher-js called the auth endpoint');
  assert.equal(req.form.socket_id, p.connection.socket_id);
  const got = waitForEvent(ch, 'Updated');
  await trigger(server, channel, 'Updated', { id: 5 });
  assert.deepEqual((await got)[0], { id: 5 });
});

test('a channel refused by the auth endpoint (403) fires pusher:subscription_error', async () => {
  const channel = `private-forbidden-${uid()}`;
  const p = await connectedPusher(server, auth, { user: '1' });
  const ch = p.subscribe(channel);
  const [err] = await waitForEvent(ch, 'pusher:subscription_error');
  assert.equal(err.status, 403);
  assert.equal(ch.subscribed, false);
  // the connection is still fine
  const ok = await subscribe(p, `private-${uid('after-403')}`);
  assert.equal(ok.subscribed, true);
});

test('forged auth signature gets pusher:subscription_error; connection stays usable', async () => {
  const channel = `private-${uid('forged')}`;
  const c = await RawClient.connect(server);
  const expected = signChannel(server.app, c.socketId, channel);
  const forged = `${server.app.key}:${hmacHex('not-the-secret', `${c.socketId}:${channel}`)}`;
  const reply = await c.subscribe(channel, { auth: forged });
  assert.equal(reply.event, 'pusher:subscription_error', `got ${reply.event} ${reply.data}`);
  assert.equal(reply.channel, channel);
  assert.equal(typeof reply.data, 'string', 'data is JSON-encoded');
  assert.equal(reply.parsed.status, 401);
  assert.equal(typeof reply.parsed.error, 'string');
  // never reveal the expected digest
  const expectedDigest = expected.split(':')[1];
  for (const t of c.texts) assert.ok(!t.includes(expectedDigest), `server revealed the expected signature: ${t}`);
  assert.ok(c.isOpen, 'connection must stay open');
  await c.ping();
  const good = await c.subscribe(channel, { auth: expected });
  assert.equal(good.event, 'pusher_internal:subscription_succeeded');
});

test('signature for another socket id, another channel, or another app key is refused', async () => {
  const channel = `private-${uid('replay')}`;
  const c = await RawClient.connect(server);
  const cases = {
    'other socket': signChannel(server.app, '1234.5678', channel),
    'other channel': signChannel(server.app, c.socketId, `${channel}-x`),
    'other key prefix': `other-key:${hmacHex(server.app.secret, `${c.socketId}:${channel}`)}`,
    'missing auth': undefined,
    'garbage': 'nonsense',
  };
  for (const [name, authValue] of Object.entries(cases)) {
    const reply = await c.subscribe(channel, authValue === undefined ? {} : { auth: authValue });
    assert.equal(reply.event, 'pusher:subscription_error', `${name}: got ${reply.event}`);
    assert.equal(reply.parsed.status, 401, `${name}: status`);
  }
  // not subscribed: a trigger does not reach it; the connection still answers pings
  await c.ping();
  await trigger(server, channel, 'leak', {});
  const sentinel = uid('sentinel');
  await c.subscribeOk(sentinel);
  await trigger(server, sentinel, 'sentinel', {});
  await c.nextEvent('sentinel', sentinel);
  assert.equal(c.all((m) => m.event === 'leak').length, 0, 'unauthorized connection received a private event');
});

test('invalid channel name gives subscription_error with status 400', async () => {
  const c = await RawClient.connect(server);
  const reply = await c.subscribe('bad channel name!');
  assert.equal(reply.event, 'pusher:subscription_error', `got ${reply.event}`);
  assert.equal(reply.parsed.status, 400);
  await c.ping();
});
