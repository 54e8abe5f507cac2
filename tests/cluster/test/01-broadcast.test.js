// 1. Broadcast across 3 nodes: HTTP API triggers (single, multi-channel, batch, bursts) reach
//    every subscriber on every node exactly once.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import {
  useCluster, RawClient, connectedPusher, pusherSink, api, trigger, syncDelivery, expectExactlyOnce, assertNoDuplicateProbes,
  awaitSentinel, waitUntil, uid,
} from '../lib/harness.js';

const h = useCluster();
let A, B, C, nodes;

before(async () => {
  [A, B, C] = await h.startCluster(3);
  nodes = [A, B, C];
});

test('every node (a separate process) answers /up and /ready 200 with Redis up', async () => {
  for (const n of nodes) {
    assert.equal((await n.get('/up')).status, 200, `${n} /up`);
    const r = await n.get('/ready');
    assert.equal(r.status, 200, `${n} /ready: ${r.status} ${r.text}`);
  }
  // three separate processes
  assert.equal(new Set(nodes.map((n) => n.pid)).size, 3);
});

/** raw clients on every node + pusher-js clients on every node, subscribed to `channel`. */
async function spreadSubscribers(channel, { presence = false } = {}) {
  const raws = [];
  const pushers = [];
  let user = 10;
  for (const n of nodes) {
    const r = await RawClient.connect(n, { label: `raw@${n.label}` });
    if (presence) await r.subscribePresence(channel, ++user);
    else await r.subscribeChannel(channel);
    raws.push(r);
    const p = await connectedPusher(n, { user: ++user });
    pushers.push(await pusherSink(p, channel));
  }
  return { raws, pushers, sinks: [...raws, ...pushers] };
}

for (const kind of ['public', 'private', 'presence']) {
  test(`${kind} channel: a trigger on each node reaches every subscriber on every node exactly once`, async () => {
    const channel = kind === 'public' ? uid('news') : `${kind}-${uid('room')}`;
    const { sinks } = await spreadSubscribers(channel, { presence: kind === 'presence' });
    for (const n of nodes) await syncDelivery(n, channel, sinks);
    for (const [i, n] of nodes.entries()) {
      await trigger(n, channel, 'order-shipped', { n: i, from: n.label });
      await expectExactlyOnce({ sinks, event: 'order-shipped', channel, match: { n: i }, what: `trigger through node ${n.label}`, via: n });
    }
    for (const s of sinks) {
      assertNoDuplicateProbes(s, channel);
      assert.deepEqual(
        s.received('order-shipped', channel).map((d) => d.from),
        ['A', 'B', 'C'],
        `${s}: the three triggers, each once`,
      );
    }
  });
}

test('multi-channel trigger and batch_events entering node B reach subscribers on every node once', async () => {
  const c1 = uid('multi-a');
  const c2 = uid('multi-b');
  const r1 = await RawClient.connect(A, { label: 'raw@A' });
  const r2 = await RawClient.connect(C, { label: 'raw@C' });
  for (const r of [r1, r2]) {
    await r.subscribeChannel(c1);
    await r.subscribeChannel(c2);
  }
  await syncDelivery(B, c1, [r1, r2]);
  await syncDelivery(B, c2, [r1, r2]);

  await trigger(B, [c1, c2], 'multi', { n: 1 });
  await expectExactlyOnce({ sinks: [r1, r2], event: 'multi', channel: c1, match: { n: 1 }, what: 'channels:[c1,c2] trigger (c1)', via: B });
  await expectExactlyOnce({ sinks: [r1, r2], event: 'multi', channel: c2, match: { n: 1 }, what: 'channels:[c1,c2] trigger (c2)', via: B });

  const res = await api(B, 'POST', '/batch_events', {
    body: { batch: [{ name: 'batched', channel: c1, data: '{"n":2}' }, { name: 'batched', channel: c2, data: '{"n":3}' }] },
  });
  assert.equal(res.status, 200, res.text);
  await expectExactlyOnce({ sinks: [r1, r2], event: 'batched', channel: c1, match: { n: 2 }, what: 'batch_events (c1)', via: B });
  await expectExactlyOnce({ sinks: [r1, r2], event: 'batched', channel: c2, match: { n: 3 }, what: 'batch_events (c2)', via: B });
});

test('a burst of 50 triggers through node A: each event exactly once on nodes B and C', async () => {
  const channel = uid('burst');
  const rb = await RawClient.connect(B, { label: 'raw@B' });
  const rc = await RawClient.connect(C, { label: 'raw@C' });
  await rb.subscribeChannel(channel);
  await rc.subscribeChannel(channel);
  await syncDelivery(A, channel, [rb, rc]);
  for (let i = 0; i < 50; i++) await trigger(A, channel, 'tick', { i });
  const count = (r) => r.received('tick', channel).length;
  await waitUntil(() => count(rb) >= 50 && count(rc) >= 50, 10000, () => `50 ticks at B and C (B ${count(rb)}, C ${count(rc)})`);
  await awaitSentinel(A, channel, [rb, rc]); // a 51st event through A, after the 50 ticks
  for (const r of [rb, rc]) {
    const got = r.received('tick', channel).map((d) => d.i);
    assert.equal(got.length, 50, `${r}: 50 deliveries, got ${got.length}`);
    assert.deepEqual([...got].sort((a, b) => a - b), Array.from({ length: 50 }, (_, i) => i), `${r}: each tick once`);
  }
});

test('events triggered sequentially through one node arrive in trigger order on other nodes', async () => {
  const channel = uid('order');
  const rb = await RawClient.connect(B, { label: 'raw@B' });
  await rb.subscribeChannel(channel);
  await syncDelivery(A, channel, [rb]);
  for (let i = 0; i < 30; i++) await trigger(A, channel, 'seq', { i });
  await waitUntil(() => rb.received('seq', channel).length >= 30, 10000, () => `30 seq events at B (got ${rb.received('seq', channel).length})`);
  assert.deepEqual(rb.received('seq', channel).map((d) => d.i), Array.from({ length: 30 }, (_, i) => i));
});
