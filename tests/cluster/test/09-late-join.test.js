// 9. A node that joins a running cluster sees the current presence state immediately, and
//    takes part in delivery, presence events and queries from then on.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import {
  useCluster, persist, RawClient, connectedPusher, pusherSubscribe, trigger, syncDelivery, expectExactlyOnce, channelInfo,
  presenceSettled, presenceUserIds, waitAllNodes, waitUntil, uid, userInfo, DEFAULT_WAIT_MS,
} from '../lib/harness.js';

const h = useCluster();
let A, B, C;
const pres = `presence-${uid('late')}`;
const pub = uid('late-pub');
let u1a, u2b, u3b, u1b;

before(async () => {
  [A, B] = await h.startCluster(2);
  u1a = await RawClient.connect(A, { label: 'u1@A' });
  await u1a.subscribePresence(pres, 1);
  await u1a.subscribeChannel(pub);
  u2b = await RawClient.connect(B, { label: 'u2@B' });
  await u2b.subscribePresence(pres, 2);
  u3b = await RawClient.connect(B, { label: 'u3@B' });
  await u3b.subscribePresence(pres, 3);
  u1b = await RawClient.connect(B, { label: 'u1@B' });
  await u1b.subscribePresence(pres, 1);
  await u1b.subscribeChannel(pub);
  await waitAllNodes([A, B], (n) => presenceUserIds(n, pres), ['1', '2', '3'], DEFAULT_WAIT_MS, 'presence users on A and B');
});

test('a node started later answers /ready and its first subscriber gets the full member list', async () => {
  C = await h.startNode({ label: 'C' });
  await waitUntil(async () => await C.adapterHealthy(), 10000, 'node C /ready 200 adapter_healthy');
  // immediately: no waiting for any sync beyond readiness
  const j = persist(await RawClient.connect(C, { label: 'u4@C' }));
  const ok = await j.subscribePresence(pres, 4);
  const p = ok.parsed.presence;
  assert.deepEqual([...p.ids].map(String).sort(), ['1', '2', '3', '4'], `member ids on the new node: ${JSON.stringify(p)}`);
  assert.equal(p.count, 4, `count on the new node: ${JSON.stringify(p)}`);
  for (const u of [1, 2, 3]) assert.deepEqual(p.hash[String(u)], userInfo(u), `user_info of ${u} on the new node`);

  // a pusher-js client on C right after
  const pj = persist(await connectedPusher(C, { user: 5 }));
  const ch = await pusherSubscribe(pj, pres);
  assert.equal(ch.members.count, 5);
});

test('the new node answers queries with the whole cluster state', async () => {
  const info = await channelInfo(C, pres, 'user_count,subscription_count');
  assert.equal(info.user_count, 5, JSON.stringify(info));
  assert.equal(info.subscription_count, 6, JSON.stringify(info));
  assert.deepEqual(await presenceUserIds(C, pres), ['1', '2', '3', '4', '5']);
  await waitAllNodes([A, B, C], (n) => channelInfo(n, pub, 'subscription_count'), { occupied: true, subscription_count: 2 }, DEFAULT_WAIT_MS, 'public channel count (clients on A and B) from every node');
});

test('the existing nodes saw the new node\'s members join once; the new node sees later joins/leaves', async () => {
  const added = (r, u) => r.all((m) => m.event === 'pusher_internal:member_added' && m.channel === pres && String(m.parsed?.user_id) === String(u));
  const removed = (r, u) => r.all((m) => m.event === 'pusher_internal:member_removed' && m.channel === pres && String(m.parsed?.user_id) === String(u));
  for (const r of [u1a, u2b]) await waitUntil(() => added(r, 4).length >= 1 && added(r, 5).length >= 1, DEFAULT_WAIT_MS, () => `${r}: member_added 4 and 5 from node C (${r.summary()})`);

  const w = await RawClient.connect(C, { label: 'watcher9@C' });
  await w.subscribePresence(pres, 9);
  await syncDelivery(A, pres, [w]);
  await syncDelivery(B, pres, [w]);
  const n6 = await RawClient.connect(A, { label: 'u6@A' });
  await n6.subscribePresence(pres, 6);
  await waitUntil(() => added(w, 6).length >= 1, DEFAULT_WAIT_MS, () => `${w}: member_added 6 from A`);
  u3b.close();
  await waitUntil(() => removed(w, 3).length >= 1, DEFAULT_WAIT_MS, () => `${w}: member_removed 3 from B`);
  const subscriptions = async () => (await channelInfo(A, pres, 'subscription_count')).subscription_count;
  const before = await subscriptions();
  u1a.close(); // user 1 still on B
  // the close is handled (count), every node has seen the leave (sentinels), the hold is over
  await waitUntil(async () => (await subscriptions()) === before - 1, DEFAULT_WAIT_MS, `subscription_count ${before - 1} after u1@A closed`);
  await presenceSettled([A, B, C], pres, [u2b, w], { leaves: true });
  for (const r of [u2b]) {
    assert.equal(added(r, 4).length, 1, `${r}: member_added 4 once`);
    assert.equal(added(r, 9).length, 1, `${r}: member_added 9 once`);
  }
  assert.equal(added(w, 6).length, 1);
  assert.equal(removed(w, 3).length, 1);
  assert.equal(removed(w, 1).length, 0, `${w}: user 1 still on B, no member_removed`);
});

test('delivery between the new node and the old ones, exactly once', async () => {
  const channel = uid('late-deliv');
  const ra = await RawClient.connect(A, { label: 'raw@A' });
  const rb = await RawClient.connect(B, { label: 'raw@B' });
  const rc = await RawClient.connect(C, { label: 'raw@C' });
  for (const r of [ra, rb, rc]) await r.subscribeChannel(channel);
  for (const n of [A, B, C]) await syncDelivery(n, channel, [ra, rb, rc]);
  await trigger(C, channel, 'from-c', { n: 1 });
  await expectExactlyOnce({ sinks: [ra, rb, rc], event: 'from-c', channel, match: { n: 1 }, what: 'trigger on the late node', via: C });
  await trigger(A, channel, 'from-a', { n: 2 });
  await expectExactlyOnce({ sinks: [ra, rb, rc], event: 'from-a', channel, match: { n: 2 }, what: 'trigger on an old node', via: A });
});
