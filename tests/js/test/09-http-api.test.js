// 9. HTTP API queries and commands via signed requests.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import {
  useHarness, connectedPusher, subscribe, api, trigger, RawClient, Recorder, uid, sleep, waitUntil, waitForEvent,
} from '../lib/harness.js';
import { PUSHERJS_RETRY_GRACE_MS } from '../../common/sentinel.js';

const h = useHarness();
let server, auth;
before(async () => {
  server = await h.startServer();
  auth = await h.startAuth(server.app);
});

test('channel queries: /channels (prefix filter, user_count), /channels/{name}, /channels/{name}/users', async () => {
  const news = uid('news');
  const priv = `private-${uid('x')}`;
  const lobby = `presence-${uid('lobby')}`;
  const a1 = await connectedPusher(server, auth, { user: '1' });
  const a2 = await connectedPusher(server, auth, { user: '1' });
  const b = await connectedPusher(server, auth, { user: '2' });
  await Promise.all([subscribe(a1, news), subscribe(b, news), subscribe(a1, priv)]);
  await Promise.all([subscribe(a1, lobby), subscribe(a2, lobby), subscribe(b, lobby)]);

  const all = await api(server, 'GET', '/channels');
  assert.equal(all.status, 200, all.text);
  for (const c of [news, priv, lobby]) assert.ok(c in all.json.channels, `${c} missing from ${all.text}`);

  const pres = await api(server, 'GET', '/channels', { query: { filter_by_prefix: 'presence-', info: 'user_count' } });
  assert.equal(pres.status, 200, pres.text);
  for (const name of Object.keys(pres.json.channels)) assert.ok(name.startsWith('presence-'), `filter let ${name} through`);
  assert.ok(lobby in pres.json.channels, pres.text);
  assert.equal(pres.json.channels[lobby].user_count, 2);

  const privOnly = await api(server, 'GET', '/channels', { query: { filter_by_prefix: 'private-' } });
  assert.equal(privOnly.status, 200, privOnly.text);
  assert.ok(priv in privOnly.json.channels);
  assert.ok(!(news in privOnly.json.channels));

  const one = await api(server, 'GET', `/channels/${news}`, { query: { info: 'subscription_count' } });
  assert.equal(one.status, 200, one.text);
  assert.equal(one.json.occupied, true);
  assert.equal(one.json.subscription_count, 2);

  const lob = await api(server, 'GET', `/channels/${lobby}`, { query: { info: 'subscription_count,user_count' } });
  assert.equal(lob.status, 200, lob.text);
  assert.equal(lob.json.occupied, true);
  assert.equal(lob.json.user_count, 2, 'user_count counts users, not connections');
  assert.equal(lob.json.subscription_count, 3, 'subscription_count counts connections');

  const empty = await api(server, 'GET', `/channels/${uid('nobody')}`);
  assert.equal(empty.status, 200, empty.text);
  assert.equal(empty.json.occupied, false);

  const users = await api(server, 'GET', `/channels/${lobby}/users`);
  assert.equal(users.status, 200, users.text);
  assert.deepEqual(users.json.users.map((u) => String(u.id)).sort(), ['1', '2']);

  const notPresence = await api(server, 'GET', `/channels/${news}/users`);
  assert.equal(notPresence.status, 400, notPresence.text);

  // counts follow departures
  a2.disconnect();
  await waitUntil(async () => {
    const r = await api(server, 'GET', `/channels/${lobby}`, { query: { info: 'subscription_count,user_count' } });
    return r.json?.subscription_count === 2 && r.json?.user_count === 2;
  }, 5000, 'presence counts after a second connection of user 1 left');
  b.disconnect();
  await waitUntil(async () => {
    const r = await api(server, 'GET', `/channels/${lobby}/users`);
    return r.status === 200 && r.json.users.length === 1 && String(r.json.users[0].id) === '1';
  }, 5000, 'users list after user 2 left');
});

test('user_count without the presence- prefix filter is a 400', async () => {
  const r = await api(server, 'GET', '/channels', { query: { info: 'user_count' } });
  assert.equal(r.status, 400, r.text);
});

test('POST /users/{id}/terminate_connections closes that user\'s connections with 4009; pusher-js does not reconnect', async () => {
  const channel = uid('term');
  async function signedIn(user) {
    const p = await connectedPusher(server, auth, { user });
    p.signin();
    await waitUntil(() => p.user.serverToUserChannel?.subscribed, 5000, `signin of user ${user}`);
    await subscribe(p, channel);
    return p;
  }
  const u1a = await signedIn('1');
  const u1b = await signedIn('1');
  const u2 = await signedIn('2');
  const raw1 = await RawClient.connect(server);
  await raw1.signin('1');
  await raw1.subscribeOk(channel);

  const states = { a: [], b: [] };
  u1a.connection.bind('state_change', ({ current }) => states.a.push(current));
  u1b.connection.bind('state_change', ({ current }) => states.b.push(current));
  const errA = waitForEvent(u1a.connection, 'error', 5000, 'pusher-js error on user 1 (a)');

  const res = await api(server, 'POST', '/users/1/terminate_connections', { body: {} });
  assert.equal(res.status, 200, res.text);
  assert.deepEqual(res.json, {});

  const close = await raw1.waitClose(5000, 'close of the terminated raw connection');
  const err = raw1.all((m) => m.event === 'pusher:error')[0];
  assert.ok(err, `pusher:error before close; got ${raw1.summary()}`);
  assert.equal(err.parsed.code, 4009);
  assert.equal(close.code, 4009);

  const [e] = await errA;
  assert.equal(e.data?.code ?? e.error?.data?.code, 4009, JSON.stringify(e));
  await waitUntil(() => u1a.connection.state === 'disconnected' && u1b.connection.state === 'disconnected', 5000,
    `user 1's pusher-js clients disconnected (a: ${u1a.connection.state}, b: ${u1b.connection.state})`);
  // Client-side timing (pusher-js' reconnect delay), no server path for a sentinel.
  await sleep(PUSHERJS_RETRY_GRACE_MS);
  assert.equal(u1a.connection.state, 'disconnected', `a states: ${states.a}`);
  assert.equal(u1b.connection.state, 'disconnected', `b states: ${states.b}`);
  assert.ok(!states.a.includes('connecting') && !states.b.includes('connecting'), `reconnected: ${JSON.stringify(states)}`);

  // user 2 is unaffected
  assert.equal(u2.connection.state, 'connected');
  const rec = new Recorder(u2.channel(channel), ['after']);
  await trigger(server, channel, 'after', { ok: 1 });
  await rec.waitFor('after');
  const info = await api(server, 'GET', `/channels/${channel}`, { query: { info: 'subscription_count' } });
  assert.equal(info.json.subscription_count, 1, info.text);
});

test('request authentication: bad signature, stale timestamp, wrong body_md5, wrong key are 401', async () => {
  const body = { name: 'x', channel: 'c', data: '{}' };
  const ok = await api(server, 'POST', '/events', { body });
  assert.equal(ok.status, 200, ok.text);
  const badSig = await api(server, 'POST', '/events', { body, tamper: (q) => (q.auth_signature = '0'.repeat(64)) });
  assert.equal(badSig.status, 401, badSig.text);
  const stale = await api(server, 'POST', '/events', { body, timestamp: Math.floor(Date.now() / 1000) - 700 });
  assert.equal(stale.status, 401, stale.text);
  const badMd5 = await api(server, 'POST', '/events', { body, tamper: (q) => (q.body_md5 = '0'.repeat(32)) });
  assert.equal(badMd5.status, 401, badMd5.text);
  const wrongKey = await api(server, 'GET', '/channels', { app: { ...server.app, key: 'other-key' } });
  assert.equal(wrongKey.status, 401, wrongKey.text);
  const wrongSecret = await api(server, 'GET', '/channels', { app: { ...server.app, secret: 'other' } });
  assert.equal(wrongSecret.status, 401, wrongSecret.text);
  const res = await fetch(`${server.httpUrl}/apps/${server.app.id}/channels`);
  assert.equal(res.status, 401, 'unsigned request');
});

test('POST /events with data over max_event_bytes is 413; /batch_events delivers each event', async () => {
  const big = await api(server, 'POST', '/events', { body: { name: 'big', channel: 'c', data: 'x'.repeat(10241) } });
  assert.equal(big.status, 413, big.text);
  const ok = await api(server, 'POST', '/events', { body: { name: 'fits', channel: 'c', data: 'x'.repeat(10000) } });
  assert.equal(ok.status, 200, ok.text);

  const c1 = uid('batch-a');
  const c2 = uid('batch-b');
  const p = await connectedPusher(server);
  const [ch1, ch2] = await Promise.all([subscribe(p, c1), subscribe(p, c2)]);
  const got = Promise.all([waitForEvent(ch1, 'one'), waitForEvent(ch2, 'two')]);
  const res = await api(server, 'POST', '/batch_events', {
    body: { batch: [{ name: 'one', channel: c1, data: '{"n":1}' }, { name: 'two', channel: c2, data: '{"n":2}' }] },
  });
  assert.equal(res.status, 200, res.text);
  const [[d1], [d2]] = await got;
  assert.deepEqual(d1, { n: 1 });
  assert.deepEqual(d2, { n: 2 });
});

test('trigger to more than 100 channels is refused with a 4xx', async () => {
  const channels = Array.from({ length: 101 }, (_, i) => `many-${i}`);
  const r = await api(server, 'POST', '/events', { body: { name: 'x', channels, data: '{}' } });
  assert.ok(r.status >= 400 && r.status < 500, `status ${r.status}`);
});
