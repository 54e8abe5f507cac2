// 13. Webhooks, one node and a cluster: Pusher's format (every request validated by the Python
// SDK's validate_webhook in the receiver), the 3 s hold of channel_vacated / member_removed and
// the come-back that cancels both, client events from pusher-js and Socket.IO whispers, cache
// misses, and exactly-once delivery across nodes (several tabs, several nodes).

import assert from 'node:assert/strict';
import http from 'node:http';
import { after, before, test } from 'node:test';
import { io as sio4 } from 'sio4';
import {
  DEFAULT_WAIT_MS,
  RawClient,
  SETTLE_MS,
  connectedPusher,
  pusherSubscribe,
  sleep,
  uid,
  useCluster,
  waitUntil,
  withTimeout,
} from '../lib/harness.js';
import { WebhookReceiver, webhookEnv } from '../lib/webhooks.js';

const cluster = useCluster();
let receiver;
let authServer;
let authUrl;

before(async () => {
  receiver = await WebhookReceiver.start({ id: '616161', key: 'cluster-test-key', secret: 'cluster-test-secret' });
  // The app's /broadcasting/auth for Socket.IO clients: allows every private channel.
  authServer = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      res.writeHead(200, { 'Content-Type': 'application/json' });
      res.end('{}');
    });
  });
  await new Promise((resolve) => authServer.listen(0, '127.0.0.1', resolve));
  authUrl = `http://127.0.0.1:${authServer.address().port}/broadcasting/auth`;
});
after(async () => {
  await receiver?.stop();
  authServer?.close();
});

const HOLD_MS = 3000;

test('one node (local adapter): occupied, member, client event, cache miss; vacated/removed after the 3 s hold; a reload sends nothing', async (t) => {
  const node = await cluster.startNode({ label: 'L', env: { ...webhookEnv(receiver), RESONANCE_ADAPTER: 'local' } });
  const ch = `presence-wh-${uid()}`;
  const a = await RawClient.connect(node);
  await a.subscribePresence(ch, 41);
  const occupied = await receiver.waitFor({ name: 'channel_occupied', channel: ch });
  assert.deepEqual(Object.keys(occupied).sort(), ['at_ms', 'channel', 'name']);
  await receiver.waitFor({ name: 'member_added', channel: ch, user_id: '41' });
  const log = await receiver.log();
  const req = log.valid.find((r) => r.events.some((e) => e.channel === ch));
  assert.equal(req.headers['x-pusher-key'], node.app.key);
  assert.match(req.headers['x-pusher-signature'], /^[0-9a-f]{64}$/);
  assert.equal(req.headers['content-type'], 'application/json');
  assert.equal(req.path, '/pusher/webhook');

  // A whisper on the presence channel carries the sender's user_id.
  const b = await RawClient.connect(node);
  await b.subscribePresence(ch, 42);
  a.whisper(ch, 'client-typing', { typing: true });
  const ce = await receiver.waitFor({ name: 'client_event', channel: ch, event: 'client-typing' });
  assert.equal(ce.socket_id, a.socketId);
  assert.equal(ce.user_id, '41');
  assert.deepEqual(JSON.parse(ce.data), { typing: true });

  // A cache channel without a cached event.
  const cache = `cache-wh-${uid()}`;
  await a.subscribeChannel(cache);
  await receiver.waitFor({ name: 'cache_miss', channel: cache });

  // A reload: the only subscriber of a channel leaves and comes back within the hold.
  const reload = `wh-reload-${uid()}`;
  await b.subscribeChannel(reload);
  await receiver.waitFor({ name: 'channel_occupied', channel: reload });
  b.unsubscribe(reload);
  await sleep(300);
  await b.subscribeChannel(reload);

  // Member 42 leaves for good: member_removed after the hold, not before.
  const left = Date.now();
  b.close();
  await sleep(HOLD_MS - 1000);
  assert.equal(await receiver.count({ name: 'member_removed', channel: ch, user_id: '42' }), 0, 'member_removed was not held');
  const removed = await receiver.waitFor({ name: 'member_removed', channel: ch, user_id: '42' }, 6000);
  assert.ok(removed.at_ms - left >= HOLD_MS - 100, `member_removed came ${removed.at_ms - left} ms after the leave`);
  t.diagnostic(`webhook latency (one node): member_removed received ${removed.at_ms - left} ms after the close (hold ${HOLD_MS} ms)`);
  // b's close also vacated `reload` (after its reload): one vacated, one occupied in all.
  await receiver.waitFor({ name: 'channel_vacated', channel: reload }, 6000);
  assert.equal(await receiver.count({ name: 'channel_occupied', channel: reload }), 1, 'the reload re-sent channel_occupied');
  assert.equal(await receiver.count({ name: 'channel_vacated', channel: reload }), 1);

  a.close();
  const vacated = await receiver.waitFor({ name: 'channel_vacated', channel: ch }, 8000);
  assert.ok(vacated.at_ms - left >= HOLD_MS);
  assert.equal(await receiver.count({ name: 'member_added', channel: ch, user_id: '41' }), 1);
  await node.stop();
});

test('cluster: several tabs on several nodes give one member_added / channel_occupied, and the last leave one member_removed / channel_vacated', async (t) => {
  const [A, B, C] = await cluster.startCluster(3, { env: webhookEnv(receiver), labels: ['A1', 'B1', 'C1'] });
  const ch = `presence-tabs-${uid()}`;
  const tabA = await RawClient.connect(A);
  await tabA.subscribePresence(ch, 7);
  const tabB = await RawClient.connect(B);
  await tabB.subscribePresence(ch, 7);
  const tabB2 = await RawClient.connect(B);
  await tabB2.subscribePresence(ch, 7);
  const other = await RawClient.connect(C);
  await other.subscribePresence(ch, 8);
  await receiver.waitFor({ name: 'member_added', channel: ch, user_id: '8' });
  await receiver.waitFor({ name: 'member_added', channel: ch, user_id: '7' });
  // Webhooks of different nodes are not ordered with each other: a duplicate would come from
  // another node at about the same time, so a short quiet time is the only witness.
  await sleep(SETTLE_MS);
  assert.equal(await receiver.count({ name: 'member_added', channel: ch, user_id: '7' }), 1, 'member_added once for three tabs on two nodes');
  assert.equal(await receiver.count({ name: 'channel_occupied', channel: ch }), 1, 'channel_occupied once for three nodes');

  tabA.close();
  tabB.close();
  await sleep(HOLD_MS + 1000);
  assert.equal(await receiver.count({ name: 'member_removed', channel: ch, user_id: '7' }), 0, 'a tab of user 7 is still open on B');
  const left = Date.now();
  tabB2.close();
  const removed = await receiver.waitFor({ name: 'member_removed', channel: ch, user_id: '7' }, 8000);
  assert.ok(removed.at_ms - left >= HOLD_MS - 100, `held ${removed.at_ms - left} ms`);
  t.diagnostic(`webhook latency (3 nodes): member_removed received ${removed.at_ms - left} ms after the close (hold ${HOLD_MS} ms)`);
  other.close();
  await receiver.waitFor({ name: 'channel_vacated', channel: ch }, 8000);
  await sleep(SETTLE_MS);
  assert.equal(await receiver.count({ name: 'member_removed', channel: ch, user_id: '7' }), 1);
  assert.equal(await receiver.count({ name: 'member_removed', channel: ch, user_id: '8' }), 1);
  assert.equal(await receiver.count({ name: 'channel_vacated', channel: ch }), 1);

  // A member who moves to another node within the hold (a reload landing elsewhere): nothing.
  const moving = `presence-move-${uid()}`;
  const stay = await RawClient.connect(C);
  await stay.subscribePresence(moving, 2);
  const first = await RawClient.connect(A);
  await first.subscribePresence(moving, 3);
  await receiver.waitFor({ name: 'member_added', channel: moving, user_id: '3' });
  first.close();
  await sleep(500);
  const second = await RawClient.connect(B);
  await second.subscribePresence(moving, 3);
  await sleep(HOLD_MS + 1500);
  assert.equal(await receiver.count({ name: 'member_removed', channel: moving, user_id: '3' }), 0, 'a reload on another node sent member_removed');
  assert.equal(await receiver.count({ name: 'member_added', channel: moving, user_id: '3' }), 1, 'a reload on another node sent member_added again');
  for (const n of [A, B, C]) await n.stop();
});

test('cluster: a SIGKILLed node\'s users and channels are reported once by the survivors', async () => {
  const [A, B, C] = await cluster.startCluster(3, { env: webhookEnv(receiver), labels: ['A2', 'B2', 'C2'] });
  const ch = `presence-kill-${uid()}`;
  const onlyOnC = `private-kill-${uid()}`;
  const survivor = await RawClient.connect(A);
  await survivor.subscribePresence(ch, 1);
  const doomed = await RawClient.connect(C);
  await doomed.subscribePresence(ch, 9);
  await doomed.subscribeChannel(onlyOnC);
  await receiver.waitFor({ name: 'member_added', channel: ch, user_id: '9' });
  await receiver.waitFor({ name: 'channel_occupied', channel: onlyOnC });
  await C.kill();
  await receiver.waitFor({ name: 'member_removed', channel: ch, user_id: '9' }, 15000);
  await receiver.waitFor({ name: 'channel_vacated', channel: onlyOnC }, 15000);
  await sleep(SETTLE_MS);
  assert.equal(await receiver.count({ name: 'member_removed', channel: ch, user_id: '9' }), 1, 'once, not once per survivor');
  assert.equal(await receiver.count({ name: 'channel_vacated', channel: onlyOnC }), 1, 'once, not once per survivor');
  assert.equal(await receiver.count({ name: 'channel_vacated', channel: ch }), 0, 'user 1 still holds the channel on A');
  survivor.close();
  for (const n of [A, B]) await n.stop();
});

test('cluster: whispers from pusher-js and Socket.IO clients become client_event webhooks, once', async () => {
  const [A, B] = await cluster.startCluster(2, { env: { ...webhookEnv(receiver, 'client_event'), RESONANCE_AUTH_ENDPOINT: authUrl }, labels: ['A3', 'B3'] });
  const ch = `private-whisper-${uid()}`;
  const p = await connectedPusher(A);
  const channel = await pusherSubscribe(p, ch);
  const s = sio4(`http://${B.host}:${B.port}`, { transports: ['websocket'], reconnection: false });
  await withTimeout(new Promise((resolve, reject) => {
    s.once('connect', resolve);
    s.once('connect_error', reject);
  }), DEFAULT_WAIT_MS, 'socket.io client connected');
  s.emit('subscribe', { channel: ch, auth: { headers: {} } });
  // The Socket.IO subscription is confirmed by receiving a whisper through it.
  const got = [];
  s.on('client-from-pusher', (c, data) => got.push(data));
  await waitUntil(async () => {
    channel.trigger('client-from-pusher', { n: got.length });
    await sleep(100);
    return got.length > 0;
  }, 10000, () => 'the Socket.IO client receives pusher-js whispers');
  s.emit('client event', { channel: ch, event: 'client-from-sio', data: { hello: 'echo' } });
  const fromSio = await receiver.waitFor({ name: 'client_event', channel: ch, event: 'client-from-sio' });
  assert.deepEqual(JSON.parse(fromSio.data), { hello: 'echo' });
  assert.equal(fromSio.user_id, undefined, 'no user_id on a private channel');
  await receiver.waitFor({ name: 'client_event', channel: ch, event: 'client-from-pusher' });
  assert.equal(await receiver.count({ name: 'channel_occupied', channel: ch }), 0, 'event_types filter: client_event only');
  await sleep(SETTLE_MS);
  assert.equal(await receiver.count({ name: 'client_event', channel: ch, event: 'client-from-sio' }), 1);
  s.close();
  p.disconnect();
  for (const n of [A, B]) await n.stop();
});
