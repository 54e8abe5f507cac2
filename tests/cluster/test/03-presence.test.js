// 3. Presence is cluster-wide: member lists include members on every node; member_added on a
//    user's first connection anywhere, member_removed on the last one anywhere — once.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import {
  useCluster, RawClient, connectedPusher, pusherSubscribe, syncDelivery, channelInfo, presenceUserIds, waitAllNodes,
  ChannelRecorder, presenceSettled, waitUntil, uid, userInfo, DEFAULT_WAIT_MS,
} from '../lib/harness.js';

const h = useCluster();
let A, B, C, nodes;

before(async () => {
  [A, B, C] = await h.startCluster(3);
  nodes = [A, B, C];
});

const added = (r, channel, user) => r.all((m) => m.event === 'pusher_internal:member_added' && m.channel === channel && String(m.parsed?.user_id) === String(user));
const removed = (r, channel, user) => r.all((m) => m.event === 'pusher_internal:member_removed' && m.channel === channel && String(m.parsed?.user_id) === String(user));

/** A watcher (raw) on every node, each its own user; syncs trigger paths from every node. */
async function watchers(channel, firstUser) {
  const ws = [];
  for (const [i, n] of nodes.entries()) {
    const w = await RawClient.connect(n, { label: `watcher${firstUser + i}@${n.label}` });
    await w.subscribePresence(channel, firstUser + i);
    ws.push(w);
  }
  for (const n of nodes) await syncDelivery(n, channel, ws);
  // every watcher has seen the others join
  for (const w of ws)
    for (const [i] of nodes.entries()) {
      const u = firstUser + i;
      if (String(u) === w.userId) continue;
      await waitUntil(() => added(w, channel, u).length >= 1 || initialIds(w, channel).includes(String(u)), DEFAULT_WAIT_MS, () => `${w} knows watcher ${u} (${w.summary()})`);
    }
  return ws;
}

function initialIds(r, channel) {
  const m = r.all((x) => x.event === 'pusher_internal:subscription_succeeded' && x.channel === channel)[0];
  return (m?.parsed?.presence?.ids || []).map(String);
}

test('subscription_succeeded lists members on all nodes (ids, hash, count)', async () => {
  const channel = `presence-${uid('lobby')}`;
  const a = await RawClient.connect(A, { label: 'u1@A' });
  await a.subscribePresence(channel, 1);
  const b = await RawClient.connect(B, { label: 'u2@B' });
  await b.subscribePresence(channel, 2);
  await waitUntil(() => added(a, channel, 2).length === 1, DEFAULT_WAIT_MS, () => `u1@A sees member_added 2 (${a.summary()})`);

  const c = await RawClient.connect(C, { label: 'u3@C' });
  const ok = await c.subscribePresence(channel, 3);
  const p = ok.parsed.presence;
  assert.deepEqual([...p.ids].map(String).sort(), ['1', '2', '3'], `ids seen by the joiner on C: ${JSON.stringify(p)}`);
  assert.equal(p.count, 3, `count seen by the joiner on C: ${JSON.stringify(p)}`);
  assert.deepEqual(p.hash['1'], userInfo(1));
  assert.deepEqual(p.hash['2'], userInfo(2));
  assert.deepEqual(p.hash['3'], userInfo(3));

  // pusher-js on A sees all four (incl. itself)
  const pj = await connectedPusher(A, { user: 4 });
  const ch = await pusherSubscribe(pj, channel);
  assert.equal(ch.members.count, 4, 'pusher-js members.count on A');
  const ids = [];
  ch.members.each((m) => ids.push(String(m.id)));
  assert.deepEqual(ids.sort(), ['1', '2', '3', '4']);
  assert.deepEqual(ch.members.get('3').info, userInfo(3));
});

test('one user, tabs on different nodes: member_added once (first tab), member_removed once (last tab)', async () => {
  const channel = `presence-${uid('tabs')}`;
  const ws = await watchers(channel, 100);
  const pw = await connectedPusher(C, { user: 200 });
  const pch = await pusherSubscribe(pw, channel);
  const pAdded = [];
  const pRemoved = [];
  pch.bind('pusher:member_added', (m) => pAdded.push(String(m.id)));
  pch.bind('pusher:member_removed', (m) => pRemoved.push(String(m.id)));
  const prec = new ChannelRecorder(pch, channel, `${pw.label}[${channel}]`);
  await presenceSettled(nodes, channel, [...ws, prec]);
  const countBefore = pch.members.count;
  assert.equal(countBefore, 4, 'pusher-js sees the 3 watchers and itself');

  // tab 1 of user 7 on node A
  const tab1 = await RawClient.connect(A, { label: 'user7-tab1@A' });
  await tab1.subscribePresence(channel, 7);
  for (const w of ws) await waitUntil(() => added(w, channel, 7).length >= 1, DEFAULT_WAIT_MS, () => `${w}: member_added 7 (${w.summary()})`);
  await waitUntil(() => pAdded.includes('7'), DEFAULT_WAIT_MS, 'pusher-js member_added 7');

  // tab 2 of user 7 on node B: no new member_added anywhere
  const tab2 = await RawClient.connect(B, { label: 'user7-tab2@B' });
  const ok2 = await tab2.subscribePresence(channel, 7);
  assert.equal(ok2.parsed.presence.count, 5, `tab 2's count (3 watchers + pusher-js user 200 + user 7): ${JSON.stringify(ok2.parsed.presence)}`);
  assert.equal(ok2.parsed.presence.ids.filter((x) => String(x) === '7').length, 1, 'user 7 listed once');
  // tab 3 of user 7 on node C
  const tab3 = await RawClient.connect(C, { label: 'user7-tab3@C' });
  await tab3.subscribePresence(channel, 7);
  await presenceSettled(nodes, channel, [...ws, prec, tab1]);
  for (const w of ws) assert.equal(added(w, channel, 7).length, 1, `${w}: member_added for user 7 exactly once (tabs on A, B, C)`);
  assert.deepEqual(pAdded.filter((x) => x === '7'), ['7'], 'pusher-js: member_added 7 once');
  assert.equal(added(tab1, channel, 7).length, 0, 'tab 1 is not told about its own user joining again');
  assert.equal(pch.members.count, 5);
  await waitAllNodes(nodes, (n) => channelInfo(n, channel, 'user_count,subscription_count'), { occupied: true, user_count: 5, subscription_count: 7 }, DEFAULT_WAIT_MS, 'presence counts with user 7 on 3 nodes');

  // close tabs on A and C: user 7 still present through B
  tab1.close();
  tab3.close();
  // every node has handled the closes (counts), then seen every leave (sentinels), then waited out
  // the member_removed hold
  await waitAllNodes(nodes, (n) => channelInfo(n, channel, 'user_count,subscription_count'), { occupied: true, user_count: 5, subscription_count: 5 }, DEFAULT_WAIT_MS, 'presence counts after tabs on A and C closed');
  await presenceSettled(nodes, channel, [...ws, prec], { leaves: true });
  for (const w of ws) assert.equal(removed(w, channel, 7).length, 0, `${w}: no member_removed while user 7 still has a tab on B`);
  assert.deepEqual(pRemoved, [], 'pusher-js: no member_removed yet');
  await waitAllNodes(nodes, (n) => presenceUserIds(n, channel), ['100', '101', '102', '200', '7'].sort(), DEFAULT_WAIT_MS, '/users while tab on B remains');

  // last tab leaves
  tab2.close();
  for (const w of ws) await waitUntil(() => removed(w, channel, 7).length >= 1, DEFAULT_WAIT_MS, () => `${w}: member_removed 7 (${w.summary()})`);
  await waitUntil(() => pRemoved.includes('7'), DEFAULT_WAIT_MS, 'pusher-js member_removed 7');
  await presenceSettled(nodes, channel, [...ws, prec], { leaves: true });
  for (const w of ws) assert.equal(removed(w, channel, 7).length, 1, `${w}: member_removed for user 7 exactly once`);
  assert.deepEqual(pRemoved, ['7'], 'pusher-js: member_removed 7 once');
  assert.equal(pch.members.count, 4);
  await waitAllNodes(nodes, (n) => channelInfo(n, channel, 'user_count,subscription_count'), { occupied: true, user_count: 4, subscription_count: 4 }, DEFAULT_WAIT_MS, 'presence counts after user 7 left');
});

test('unsubscribe (not disconnect) of the last tab sends member_removed once; re-join sends member_added again', async () => {
  const channel = `presence-${uid('unsub')}`;
  const ws = await watchers(channel, 300);
  const t1 = await RawClient.connect(B, { label: 'user8-tab1@B' });
  const t2 = await RawClient.connect(C, { label: 'user8-tab2@C' });
  await t1.subscribePresence(channel, 8);
  for (const w of ws) await waitUntil(() => added(w, channel, 8).length === 1, DEFAULT_WAIT_MS, () => `${w}: member_added 8`);
  await t2.subscribePresence(channel, 8);
  t1.unsubscribe(channel);
  await t1.ping(); // node B has handled the unsubscribe
  await presenceSettled(nodes, channel, ws, { leaves: true });
  for (const w of ws) assert.equal(removed(w, channel, 8).length, 0, `${w}: user 8 still has a tab on C`);
  t2.unsubscribe(channel);
  await t2.ping();
  for (const w of ws) await waitUntil(() => removed(w, channel, 8).length >= 1, DEFAULT_WAIT_MS, () => `${w}: member_removed 8`);
  // re-join on A
  const t3 = await RawClient.connect(A, { label: 'user8-tab3@A' });
  await t3.subscribePresence(channel, 8);
  for (const w of ws) await waitUntil(() => added(w, channel, 8).length >= 2, DEFAULT_WAIT_MS, () => `${w}: second member_added 8 after re-join`);
  await presenceSettled(nodes, channel, ws, { leaves: true });
  for (const w of ws) {
    assert.equal(added(w, channel, 8).length, 2, `${w}: member_added 8 twice in total (join, re-join)`);
    assert.equal(removed(w, channel, 8).length, 1, `${w}: member_removed 8 once`);
  }
});

test('simultaneous first connections of one user on two nodes: member_added exactly once', async () => {
  const channel = `presence-${uid('race')}`;
  const ws = await watchers(channel, 400);
  for (let round = 0; round < 3; round++) {
    const user = 500 + round;
    const ta = await RawClient.connect(A, { label: `user${user}@A` });
    const tc = await RawClient.connect(C, { label: `user${user}@C` });
    await Promise.all([ta.subscribePresence(channel, user), tc.subscribePresence(channel, user)]);
    for (const w of ws) await waitUntil(() => added(w, channel, user).length >= 1, DEFAULT_WAIT_MS, () => `${w}: member_added ${user}`);
    await presenceSettled(nodes, channel, ws);
    for (const w of ws) assert.equal(added(w, channel, user).length, 1, `${w}: member_added ${user} once although both tabs joined at the same time (round ${round})`);
    // simultaneous last disconnections: member_removed exactly once
    ta.close();
    tc.close();
    for (const w of ws) await waitUntil(() => removed(w, channel, user).length >= 1, DEFAULT_WAIT_MS, () => `${w}: member_removed ${user}`);
    await presenceSettled(nodes, channel, ws, { leaves: true });
    for (const w of ws) assert.equal(removed(w, channel, user).length, 1, `${w}: member_removed ${user} once although both tabs left at the same time (round ${round})`);
  }
});

test('member_added / member_removed carry user_info across nodes; the joiner is not told about itself', async () => {
  const channel = `presence-${uid('info')}`;
  const wa = await RawClient.connect(A, { label: 'watcher@A' });
  await wa.subscribePresence(channel, 600);
  const jb = await RawClient.connect(B, { label: 'joiner@B' });
  await syncDelivery(B, channel, [wa]);
  const info = { name: 'Zed', role: 'admin' };
  await jb.subscribePresence(channel, 'user-zed', info);
  const m = await wa.nextEvent('pusher_internal:member_added', channel);
  assert.deepEqual(m.parsed, { user_id: 'user-zed', user_info: info });
  await presenceSettled(nodes, channel, [wa, jb]);
  assert.equal(jb.all((x) => x.event === 'pusher_internal:member_added').length, 0, `joiner got member_added: ${jb.summary()}`);
  jb.close();
  const r = await wa.nextEvent('pusher_internal:member_removed', channel);
  assert.equal(String(r.parsed.user_id), 'user-zed');
});
