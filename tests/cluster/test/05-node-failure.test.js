// 5. A node killed with SIGKILL: queries from survivors stay bounded by RESONANCE_QUERY_TIMEOUT;
//    within RESONANCE_NODE_TIMEOUT (+ a few seconds) survivors get member_removed for users that
//    were only on the dead node (once), counts drop, delivery among survivors goes on.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import {
  useCluster, RawClient, connectedPusher, pusherSubscribe, api, trigger, syncDelivery, expectExactlyOnce, channelInfo,
  presenceSettled, presenceUserIds, waitAllNodes, waitUntil, sleep, uid, NODE_TIMEOUT_S, QUERY_TIMEOUT_MS, SETTLE_MS, DEFAULT_WAIT_MS,
} from '../lib/harness.js';

const h = useCluster();
/** the bound given by the spec: node timeout plus "a few seconds" */
const REMOVAL_BOUND_MS = (NODE_TIMEOUT_S + 5) * 1000;
/** a query must not hang on the dead node: the query timeout plus slack */
const QUERY_BOUND_MS = QUERY_TIMEOUT_MS + 1500;

let A, B, C;
const pres = `presence-${uid('fail')}`;
const pub = uid('fail-pub');
let wA, wB, pjA, pjRemoved, u2onB, killedAt, earlyQueries;

const removed = (r, user) => r.all((m) => m.event === 'pusher_internal:member_removed' && m.channel === pres && String(m.parsed?.user_id) === String(user));

before(async () => {
  [A, B, C] = await h.startCluster(3);
  // watchers on the survivors
  wA = await RawClient.connect(A, { label: 'watcher100@A' });
  await wA.subscribePresence(pres, 100);
  await wA.subscribeChannel(pub);
  wB = await RawClient.connect(B, { label: 'watcher101@B' });
  await wB.subscribePresence(pres, 101);
  await wB.subscribeChannel(pub);
  pjA = await connectedPusher(A, { user: 102 });
  const ch = await pusherSubscribe(pjA, pres);
  pjRemoved = [];
  ch.bind('pusher:member_removed', (m) => pjRemoved.push(String(m.id)));
  pjA.presence = ch;
  // user 1: only on C (two tabs); user 2: on B and C; user 3: only on B
  for (const [n, user, label] of [[C, 1, 'u1a@C'], [C, 1, 'u1b@C'], [C, 2, 'u2@C'], [B, 2, 'u2@B'], [B, 3, 'u3@B']]) {
    const r = await RawClient.connect(n, { label });
    await r.subscribePresence(pres, user);
    await r.subscribeChannel(pub);
    if (label === 'u2@B') u2onB = r;
  }
  const nodes = [A, B, C];
  // 6 users, 8 connections on the presence channel; 7 raw on the public channel
  await waitAllNodes(nodes, (n) => channelInfo(n, pres, 'user_count,subscription_count'), { occupied: true, user_count: 6, subscription_count: 8 }, 10000, 'presence state before the kill');
  await waitAllNodes(nodes, (n) => channelInfo(n, pub, 'subscription_count'), { occupied: true, subscription_count: 7 }, 10000, 'public state before the kill');
  await syncDelivery(A, pub, [wB]);
  await syncDelivery(B, pub, [wA]);

  await C.kill();
  killedAt = Date.now();
  // the queries are fired right away, while the survivors still believe C is alive
  const q = (n, p, query) => api(n, 'GET', p, { query, timeoutMs: 15000 }).then(
    (r) => ({ node: n.label, path: p, status: r.status, ms: r.ms, text: r.text }),
    (e) => ({ node: n.label, path: p, status: 0, ms: Date.now() - killedAt, text: e.message }),
  );
  earlyQueries = await Promise.all([
    q(A, `/channels/${pres}`, { info: 'user_count,subscription_count' }),
    q(B, `/channels/${pres}/users`),
    q(A, '/channels', { filter_by_prefix: 'presence-', info: 'user_count' }),
    q(B, `/channels/${pub}`, { info: 'subscription_count' }),
  ]);
});

test('queries to survivors right after a SIGKILL answer within RESONANCE_QUERY_TIMEOUT (+slack), not hang', () => {
  assert.ok(!C.running, 'node C is dead');
  console.log(`query times right after the SIGKILL: ${earlyQueries.map((r) => `${r.node} ${r.path} ${r.status} ${r.ms} ms`).join('; ')}`);
  for (const r of earlyQueries) {
    assert.equal(r.status, 200, `${r.node} GET ${r.path} right after the kill: ${r.status} ${r.text}`);
    assert.ok(r.ms <= QUERY_BOUND_MS, `${r.node} GET ${r.path} took ${r.ms} ms; bound ${QUERY_BOUND_MS} ms (RESONANCE_QUERY_TIMEOUT=${QUERY_TIMEOUT_MS})`);
  }
});

test('survivors get member_removed (once) for the user that was only on the dead node, within the node timeout bound', async () => {
  const watchers = [wA, wB];
  for (const w of watchers)
    await waitUntil(() => removed(w, 1).length >= 1, Math.max(1000, killedAt + REMOVAL_BOUND_MS - Date.now()), () => `${w}: member_removed 1 within ${REMOVAL_BOUND_MS} ms of the SIGKILL (${w.summary()})`);
  await waitUntil(() => pjRemoved.includes('1'), Math.max(1000, killedAt + REMOVAL_BOUND_MS - Date.now()), 'pusher-js member_removed 1');
  for (const w of watchers) {
    const at = removed(w, 1)[0].at - killedAt;
    assert.ok(at <= REMOVAL_BOUND_MS, `${w}: member_removed 1 after ${at} ms`);
  }
  // Inherently time-based: each survivor drops the dead node's members on its own node timeout
  // (NODE_TIMEOUT_S), not through a message a sentinel could follow.
  await sleep(SETTLE_MS);
  for (const w of watchers) {
    assert.equal(removed(w, 1).length, 1, `${w}: member_removed 1 exactly once (user 1 had 2 connections on C)`);
    assert.equal(removed(w, 2).length, 0, `${w}: user 2 still has a connection on B: no member_removed`);
    assert.equal(removed(w, 3).length, 0, `${w}: user 3 is on B: no member_removed`);
  }
  assert.deepEqual(pjRemoved, ['1'], 'pusher-js: only user 1 removed');
  assert.equal(pjA.presence.members.count, 5, 'pusher-js members.count after the dead node was dropped');
});

test('counts and users drop on every survivor (the dead node\'s connections are gone)', async () => {
  const survivors = [A, B];
  const bound = Math.max(2000, killedAt + REMOVAL_BOUND_MS - Date.now());
  await waitAllNodes(survivors, (n) => channelInfo(n, pres, 'user_count,subscription_count'), { occupied: true, user_count: 5, subscription_count: 5 }, bound, 'presence counts without node C');
  await waitAllNodes(survivors, (n) => presenceUserIds(n, pres), ['100', '101', '102', '2', '3'].sort(), 2000, 'users without node C');
  await waitAllNodes(survivors, (n) => channelInfo(n, pub, 'subscription_count'), { occupied: true, subscription_count: 4 }, 2000, 'public subscription_count without node C');
  for (const n of survivors) {
    const r = await api(n, 'GET', '/channels', { query: { filter_by_prefix: pres, info: 'user_count' } });
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(r.json, { channels: { [pres]: { user_count: 5 } } }, `${n}: /channels user_count`);
    assert.ok(r.ms < QUERY_TIMEOUT_MS, `${n}: once C is known dead, queries do not wait for it (${r.ms} ms)`);
  }
});

test('delivery between the survivors goes on after the kill, exactly once', async () => {
  await trigger(A, pub, 'after-kill', { n: 1 });
  await expectExactlyOnce({ sinks: [wA, wB, u2onB], event: 'after-kill', channel: pub, match: { n: 1 }, what: 'trigger on A after C died', via: A });
  await trigger(B, pres, 'after-kill', { n: 2 });
  await expectExactlyOnce({ sinks: [wA, wB, u2onB], event: 'after-kill', channel: pres, match: { n: 2 }, what: 'presence trigger on B after C died', via: B });
});

test('a user whose other tab died with node C is removed when its last live tab (on B) leaves', async () => {
  u2onB.close();
  await waitUntil(() => removed(wA, 2).length >= 1, DEFAULT_WAIT_MS, () => `${wA}: member_removed 2 after user 2's tab on B closed (${wA.summary()})`);
  await presenceSettled([A, B], pres, [wA, wB], { leaves: true });
  assert.equal(removed(wA, 2).length, 1, 'member_removed 2 once');
  assert.equal(removed(wB, 2).length, 1, `${wB}: member_removed 2 once`);
  await waitAllNodes([A, B], (n) => presenceUserIds(n, pres), ['100', '101', '102', '3'].sort(), DEFAULT_WAIT_MS, 'users after user 2 left');
});

test('a new node joining after the failure sees the survivors\' state, not the dead node\'s', async () => {
  const D = await h.startNode({ label: 'D' });
  await waitUntil(async () => await D.adapterHealthy(), 10000, 'node D /ready adapter_healthy');
  const j = await RawClient.connect(D, { label: 'u4@D' });
  const ok = await j.subscribePresence(pres, 4);
  assert.deepEqual([...ok.parsed.presence.ids].map(String).sort(), ['100', '101', '102', '3', '4'].sort(), `presence seen on D: ${JSON.stringify(ok.parsed.presence)}`);
  assert.equal(ok.parsed.presence.count, 5);
  await waitUntil(() => wA.all((m) => m.event === 'pusher_internal:member_added' && String(m.parsed?.user_id) === '4').length === 1, DEFAULT_WAIT_MS, 'watcher on A sees user 4 from D');
});
