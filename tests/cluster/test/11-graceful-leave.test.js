// 11. A node stopped gracefully (SIGTERM): its clients get 4200, survivors get member_removed
//     exactly once for users that were only on it (the normal leave path and the node-timeout
//     path must not both fire), users with a tab elsewhere stay, counts drop.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import {
  useCluster, RawClient, channelInfo, presenceUserIds, waitAllNodes, waitUntil, sleep, uid, NODE_TIMEOUT_S, DEFAULT_WAIT_MS,
} from '../lib/harness.js';

const h = useCluster();
let A, B, C;

before(async () => {
  [A, B, C] = await h.startCluster(3);
});

test('SIGTERM of a node: 4200 to its clients, member_removed once per user only on it, nothing later from the node timeout', async () => {
  const pres = `presence-${uid('bye')}`;
  const removed = (r, u) => r.all((m) => m.event === 'pusher_internal:member_removed' && m.channel === pres && String(m.parsed?.user_id) === String(u));
  const wA = await RawClient.connect(A, { label: 'watcher100@A' });
  await wA.subscribePresence(pres, 100);
  const wB = await RawClient.connect(B, { label: 'watcher101@B' });
  await wB.subscribePresence(pres, 101);
  const onC = [];
  for (const [user, label] of [[1, 'u1@C'], [1, 'u1b@C'], [2, 'u2@C']]) {
    const r = await RawClient.connect(C, { label });
    await r.subscribePresence(pres, user);
    onC.push(r);
  }
  const u2B = await RawClient.connect(B, { label: 'u2@B' });
  await u2B.subscribePresence(pres, 2);
  await waitAllNodes([A, B, C], (n) => channelInfo(n, pres, 'user_count,subscription_count'), { occupied: true, user_count: 4, subscription_count: 6 }, DEFAULT_WAIT_MS, 'state before SIGTERM');

  const t0 = Date.now();
  const exit = C.stop(10000);
  for (const r of onC) {
    const close = await r.waitClose(DEFAULT_WAIT_MS, 'close on graceful shutdown');
    assert.equal(close.code, 4200, `${r}: close code on shutdown`);
  }
  const info = await exit;
  assert.equal(info.code, 0, `node C exit after SIGTERM: ${JSON.stringify(info)}`);

  for (const w of [wA, wB]) await waitUntil(() => removed(w, 1).length >= 1, (NODE_TIMEOUT_S + 5) * 1000, () => `${w}: member_removed 1 after C shut down (${w.summary()})`);
  const took = Date.now() - t0;
  // Inherently time-based (tied to RESONANCE_NODE_TIMEOUT): wait past the node timeout, the
  // heartbeat path must not remove anyone a second time
  await sleep((NODE_TIMEOUT_S + 2) * 1000);
  for (const w of [wA, wB]) {
    assert.equal(removed(w, 1).length, 1, `${w}: member_removed 1 exactly once (took ${took} ms)`);
    assert.equal(removed(w, 2).length, 0, `${w}: user 2 still on B`);
  }
  await waitAllNodes([A, B], (n) => presenceUserIds(n, pres), ['100', '101', '2'], DEFAULT_WAIT_MS, 'users after C left');
  await waitAllNodes([A, B], (n) => channelInfo(n, pres, 'user_count,subscription_count'), { occupied: true, user_count: 3, subscription_count: 3 }, DEFAULT_WAIT_MS, 'counts after C left');
});
