// 10. RESONANCE_CLUSTER_PREFIX namespaces a cluster: two clusters sharing one Redis (same app
//    credentials) with different prefixes do not see each other's events, presence or counts.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import {
  useCluster, RawClient, trigger, syncDelivery, expectExactlyOnce, channelInfo, presenceUserIds, waitAllNodes, sleep, uid,
  SETTLE_MS, DEFAULT_WAIT_MS,
} from '../lib/harness.js';

const h = useCluster();
let X1, X2, Y1, Y2;

before(async () => {
  [X1, X2] = await h.startCluster(2, { clusterPrefix: 'alpha', labels: ['X1', 'X2'] });
  [Y1, Y2] = await h.startCluster(2, { clusterPrefix: 'beta', labels: ['Y1', 'Y2'] });
});

test('events stay inside their cluster', async () => {
  const channel = uid('ns');
  const x1 = await RawClient.connect(X1, { label: 'raw@X1' });
  const x2 = await RawClient.connect(X2, { label: 'raw@X2' });
  const y1 = await RawClient.connect(Y1, { label: 'raw@Y1' });
  const y2 = await RawClient.connect(Y2, { label: 'raw@Y2' });
  for (const r of [x1, x2, y1, y2]) await r.subscribeChannel(channel);
  await syncDelivery(X1, channel, [x1, x2]);
  await syncDelivery(Y1, channel, [y1, y2]);
  await trigger(X1, channel, 'alpha-only', { n: 1 });
  // no `via`: a leak into the other cluster has no path a sentinel could follow (SETTLE_MS)
  await expectExactlyOnce({ sinks: [x1, x2], absent: [y1, y2], event: 'alpha-only', channel, match: { n: 1 }, what: 'trigger in cluster alpha' });
  await trigger(Y2, channel, 'beta-only', { n: 2 });
  await expectExactlyOnce({ sinks: [y1, y2], absent: [x1, x2], event: 'beta-only', channel, match: { n: 2 }, what: 'trigger in cluster beta' });
});

test('presence and queries stay inside their cluster', async () => {
  const pres = `presence-${uid('ns')}`;
  const x1 = await RawClient.connect(X1, { label: 'u1@X1' });
  await x1.subscribePresence(pres, 1);
  const x2 = await RawClient.connect(X2, { label: 'u2@X2' });
  await x2.subscribePresence(pres, 2);
  await waitAllNodes([X1, X2], (n) => presenceUserIds(n, pres), ['1', '2'], DEFAULT_WAIT_MS, 'users in cluster alpha');
  const y = await RawClient.connect(Y1, { label: 'u3@Y1' });
  const ok = await y.subscribePresence(pres, 3);
  assert.deepEqual(ok.parsed.presence.ids.map(String), ['3'], `cluster beta must not see alpha's members: ${JSON.stringify(ok.parsed.presence)}`);
  // Time-based on purpose: a leak across clusters has no path a sentinel could follow.
  await sleep(SETTLE_MS);
  assert.equal(x1.all((m) => m.event === 'pusher_internal:member_added' && String(m.parsed?.user_id) === '3').length, 0, 'alpha was told about beta\'s member');
  await waitAllNodes([Y1, Y2], (n) => channelInfo(n, pres, 'user_count,subscription_count'), { occupied: true, user_count: 1, subscription_count: 1 }, DEFAULT_WAIT_MS, 'counts in cluster beta');
  await waitAllNodes([X1, X2], (n) => channelInfo(n, pres, 'user_count,subscription_count'), { occupied: true, user_count: 2, subscription_count: 2 }, DEFAULT_WAIT_MS, 'counts in cluster alpha');
});
