// 4. presence: member list deduplicated per user; member_added only on a user's first
//    connection; member_removed only when the user's last connection leaves.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import {
  useHarness, connectedPusher, subscribe, trigger, api, waitUntil, Recorder, RawClient, uid, signChannel,
} from '../lib/harness.js';

const h = useHarness();
let server, auth;
before(async () => {
  server = await h.startServer();
  auth = await h.startAuth(server.app);
});

const memberIds = (members) => {
  const ids = [];
  members.each((m) => ids.push(String(m.id)));
  return ids.sort();
};

test('presence: members, dedupe, member_added/member_removed per user (pusher-js)', async () => {
  const channel = `presence-${uid('room')}`;
  // user 1, first connection
  const a1 = await connectedPusher(server, auth, { user: '1' });
  const cha1 = await subscribe(a1, channel);
  assert.equal(cha1.members.count, 1);
  assert.deepEqual(memberIds(cha1.members), ['1']);
  assert.equal(String(cha1.members.me.id), '1');
  assert.deepEqual(cha1.members.me.info, { name: 'Alice' });
  const recA1 = new Recorder(cha1, ['pusher:member_added', 'pusher:member_removed', 'sentinel']);

  // user 2 joins: A1 sees member_added for 2
  const b1 = await connectedPusher(server, auth, { user: '2' });
  const chb1 = await subscribe(b1, channel);
  assert.equal(chb1.members.count, 2);
  assert.deepEqual(memberIds(chb1.members), ['1', '2']);
  assert.deepEqual(chb1.members.get('1').info, { name: 'Alice' });
  const added = await recA1.waitFor('pusher:member_added');
  assert.equal(String(added.data.id), '2');
  assert.deepEqual(added.data.info, { name: 'Bob' });
  const recB1 = new Recorder(chb1, ['pusher:member_added', 'pusher:member_removed', 'sentinel']);

  // user 1, second connection: no member_added anywhere, list stays deduplicated
  const a2 = await connectedPusher(server, auth, { user: '1' });
  const cha2 = await subscribe(a2, channel);
  assert.equal(cha2.members.count, 2, 'members deduplicated per user');
  assert.deepEqual(memberIds(cha2.members), ['1', '2']);
  await trigger(server, channel, 'sentinel', { n: 1 });
  await recB1.waitFor('sentinel', 5000, (i) => i.data.n === 1);
  await recA1.waitFor('sentinel', 5000, (i) => i.data.n === 1);
  assert.equal(recB1.of('pusher:member_added').length, 0, 'member_added fired for a second connection of user 1');
  assert.equal(recA1.of('pusher:member_added').length, 1, 'A1 saw only user 2 join');
  assert.equal(chb1.members.count, 2);

  // user 1's first connection leaves: user 1 is still present through A2
  const recA2 = new Recorder(cha2, ['pusher:member_removed', 'sentinel']);
  a1.disconnect();
  // The server has handled the close once the channel counts 2 connections; a member_removed
  // would be queued right then, so the sentinel triggered afterwards arrives after it.
  const subscriptions = async () =>
    (await api(server, 'GET', `/channels/${channel}`, { query: { info: 'subscription_count' } })).json?.subscription_count;
  await waitUntil(async () => (await subscriptions()) === 2, 5000, 'the server to drop A1 from the channel (subscription_count 2)');
  await trigger(server, channel, 'sentinel', { n: 2 });
  await recB1.waitFor('sentinel', 5000, (i) => i.data.n === 2);
  await recA2.waitFor('sentinel', 5000, (i) => i.data.n === 2);
  assert.equal(recB1.of('pusher:member_removed').length, 0, 'member_removed fired although user 1 still has a connection');
  assert.equal(recA2.of('pusher:member_removed').length, 0);

  // user 1's last connection leaves: member_removed for 1
  a2.disconnect();
  const removed = await recB1.waitFor('pusher:member_removed');
  assert.equal(String(removed.data.id), '1');
  assert.equal(chb1.members.count, 1);
  assert.deepEqual(memberIds(chb1.members), ['2']);
});

test('presence wire format: ids/hash/count deduplicated; member events carry user_id and user_info', async () => {
  const channel = `presence-${uid('wire')}`;
  const a1 = await RawClient.connect(server);
  const a2 = await RawClient.connect(server);
  const b = await RawClient.connect(server);
  await a1.subscribePresence(channel, '1');
  await a2.subscribePresence(channel, '1');
  const ok = await b.subscribePresence(channel, '2');
  assert.equal(typeof ok.data, 'string', 'subscription_succeeded data is JSON-encoded');
  const presence = ok.parsed.presence;
  assert.ok(presence, `presence object missing: ${ok.data}`);
  assert.deepEqual(presence.ids.map(String).sort(), ['1', '2']);
  assert.equal(presence.count, 2);
  assert.deepEqual(Object.keys(presence.hash).sort(), ['1', '2']);
  assert.deepEqual(presence.hash['1'], { name: 'Alice' });
  assert.deepEqual(presence.hash['2'], { name: 'Bob' });

  const addedOnA1 = await a1.nextEvent('pusher_internal:member_added', channel);
  assert.equal(String(addedOnA1.parsed.user_id), '2');
  assert.deepEqual(addedOnA1.parsed.user_info, { name: 'Bob' });
  // a2 joined after a1: a1 must have exactly one member_added (for user 2)
  await a1.ping();
  assert.equal(a1.all((m) => m.event === 'pusher_internal:member_added').length, 1);

  b.close();
  const removed = await a1.nextEvent('pusher_internal:member_removed', channel);
  assert.equal(String(removed.parsed.user_id), '2');
});

test('presence subscription without channel_data or with a mismatching signature is refused', async () => {
  const channel = `presence-${uid('bad')}`;
  const c = await RawClient.connect(server);
  const r1 = await c.subscribe(channel, { auth: signChannel(server.app, c.socketId, channel) });
  assert.equal(r1.event, 'pusher:subscription_error', `no channel_data: got ${r1.event}`);
  const signedData = JSON.stringify({ user_id: '1', user_info: { name: 'Alice' } });
  const r2 = await c.subscribe(channel, {
    auth: signChannel(server.app, c.socketId, channel, signedData),
    channel_data: JSON.stringify({ user_id: '666', user_info: { name: 'Mallory' } }),
  });
  assert.equal(r2.event, 'pusher:subscription_error', `tampered channel_data: got ${r2.event}`);
  assert.equal(r2.parsed.status, 401);
  await c.ping();
});

test('unsubscribe from presence removes the member (pusher:unsubscribe)', async () => {
  const channel = `presence-${uid('unsub')}`;
  const a = await connectedPusher(server, auth, { user: '1' });
  const b = await connectedPusher(server, auth, { user: '3' });
  const cha = await subscribe(a, channel);
  const rec = new Recorder(cha, ['pusher:member_added', 'pusher:member_removed']);
  await subscribe(b, channel);
  await rec.waitFor('pusher:member_added');
  b.unsubscribe(channel);
  const removed = await rec.waitFor('pusher:member_removed');
  assert.equal(String(removed.data.id), '3');
  assert.equal(cha.members.count, 1);
});
