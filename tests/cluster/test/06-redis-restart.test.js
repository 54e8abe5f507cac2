// 6. The broker (Redis; with CLUSTER_ENGINE: the three Redis Cluster masters, or nats-server)
//    killed mid-stream and started again on the same port(s): nodes keep serving their own
//    clients, /ready stays 200 but reports adapter_healthy false while Redis is down, cross-node delivery resumes,
//    nothing is delivered twice, no node crashes.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import {
  useCluster, RawClient, connectedPusher, pusherSink, trigger, api, syncDelivery, expectExactlyOnce, assertNoDuplicateProbes,
  awaitSentinel, channelInfo, presenceSettled, presenceUserIds, waitAllNodes, waitUntil, sleep, uid, DEFAULT_WAIT_MS, BROKER_NAME,
} from '../lib/harness.js';

const h = useCluster();
let broker, A, B, nodes;
const channel = `private-${uid('stream')}`;
const pres = `presence-${uid('stream')}`;
let ra, ra2, rb, pa, pb, sinks;
let presA, presB;
let stream; // background trigger loop
/** How long Redis stays down before it is started again on the same port. */
const OUTAGE_MS = 1000;

/** Every `tick` event's n at `sink`, checked for duplicates. */
function ticks(sink) {
  return sink.received('tick', channel).map((d) => d.n);
}
function dups(list) {
  return list.filter((x, i) => list.indexOf(x) !== i);
}

// Readiness stays 200 through a Redis outage (each node still serves its own
// clients; failing them all at once would empty the load balancer); the
// dependency shows as /ready's `adapter_healthy`.
async function waitAdapterHealthy(want, ms, when) {
  const last = {};
  await waitUntil(
    async () => {
      for (const n of nodes) {
        const r = await n.get('/ready', 2000).catch(() => null);
        last[n.label] = r && { status: r.status, adapter_healthy: r.json?.adapter_healthy, degraded: r.json?.degraded };
      }
      return nodes.every((n) => last[n.label]?.status === 200 && last[n.label].adapter_healthy === want && last[n.label].degraded === !want);
    },
    ms,
    () => `/ready 200 with adapter_healthy ${want} on both nodes ${when} (last: ${JSON.stringify(last)})`,
    100,
  );
}

before(async () => {
  broker = await h.broker();
  [A, B] = await h.startCluster(2);
  nodes = [A, B];
  ra = await RawClient.connect(A, { label: 'raw@A' });
  ra2 = await RawClient.connect(A, { label: 'raw2@A' });
  rb = await RawClient.connect(B, { label: 'raw@B' });
  for (const r of [ra, ra2, rb]) await r.subscribeChannel(channel);
  pa = await pusherSink(await connectedPusher(A, { user: 50 }), channel);
  pb = await pusherSink(await connectedPusher(B, { user: 51 }), channel);
  sinks = [ra, ra2, rb, pa, pb];
  presA = await RawClient.connect(A, { label: 'u1@A' });
  await presA.subscribePresence(pres, 1);
  presB = await RawClient.connect(B, { label: 'u2@B' });
  await presB.subscribePresence(pres, 2);
  await syncDelivery(A, channel, sinks);
  await syncDelivery(B, channel, sinks);
});

test('baseline: cross-node delivery works before the outage', async () => {
  await trigger(A, channel, 'base', { n: 1 });
  await expectExactlyOnce({ sinks, event: 'base', channel, match: { n: 1 }, what: 'baseline trigger on A', via: A });
  await waitAllNodes(nodes, (n) => presenceUserIds(n, pres), ['1', '2'], DEFAULT_WAIT_MS, 'presence users before the outage');
});

test(`${BROKER_NAME} killed mid-stream: no crash, /ready 200 but adapter_healthy false on every node, local clients still served`, async () => {
  // a stream of triggers alternating between the nodes, running across the kill
  let n = 0;
  const sent = { A: [], B: [] };
  let stop = false;
  stream = { sent, done: null };
  stream.done = (async () => {
    while (!stop) {
      const node = n % 2 === 0 ? A : B;
      const i = n++;
      try {
        const r = await api(node, 'POST', '/events', { body: { name: 'tick', channel, data: JSON.stringify({ n: i, via: node.label }) }, timeoutMs: 3000 });
        if (r.status === 200) sent[node.label].push(i);
      } catch {
        /* the node may refuse while Redis is down; counted as not sent */
      }
      await sleep(25);
    }
  })();
  stream.stop = () => (stop = true);

  // let the stream get going on both nodes before the kill
  await waitUntil(() => sent.A.length >= 5 && sent.B.length >= 5, DEFAULT_WAIT_MS, () => `ticks accepted before the kill (A ${sent.A.length}, B ${sent.B.length})`);
  await broker.kill();
  const killedAt = Date.now();

  await waitAdapterHealthy(false, 10000, 'while Redis is down');
  for (const nd of nodes) {
    assert.ok(nd.running, `${nd} crashed after Redis died: ${JSON.stringify(nd.exitInfo)}`);
    assert.equal((await nd.get('/up')).status, 200, `${nd} /up while Redis is down`);
  }
  assert.ok(Date.now() - killedAt < 10000);

  // local clients are still served: a trigger through A reaches A's clients once
  const local = await api(A, 'POST', '/events', { body: { name: 'local', channel, data: '{"n":1}' } });
  assert.equal(local.status, 200, `trigger on A while Redis is down: ${local.status} ${local.text}`);
  await expectExactlyOnce({ sinks: [ra, ra2, pa], event: 'local', channel, match: { n: 1 }, what: 'trigger on A during the outage, A\'s clients', via: A });
  const localB = await api(B, 'POST', '/events', { body: { name: 'local', channel, data: '{"n":2}' } });
  assert.equal(localB.status, 200, `trigger on B while Redis is down: ${localB.status} ${localB.text}`);
  await expectExactlyOnce({ sinks: [rb, pb], event: 'local', channel, match: { n: 2 }, what: 'trigger on B during the outage, B\'s clients', via: B });

  // whisper between two clients of node A
  ra.whisper(channel, 'client-local', { n: 3 });
  await expectExactlyOnce({ sinks: [ra2, pa], absent: [ra], event: 'client-local', channel, match: { n: 3 }, what: 'whisper on A during the outage', via: A });

  // new connections and subscriptions on a node still work
  const fresh = await RawClient.connect(B, { label: 'fresh@B' });
  await fresh.subscribeChannel(channel);
  await fresh.ping();
  for (const nd of nodes) assert.ok(nd.running, `${nd} still running`);
});

test(`${BROKER_NAME} back on the same port(s): adapter_healthy again, cross-node delivery resumes, no duplicates`, async () => {
  // Inherently time-based: how long Redis stays down (the nodes retry with back-off meanwhile).
  await sleep(OUTAGE_MS);
  await broker.start();
  await waitAdapterHealthy(true, 20000, 'after Redis came back on the same port');
  await syncDelivery(A, channel, sinks, 20000);
  await syncDelivery(B, channel, sinks, 20000);
  // let the stream run on both nodes after the restart
  const resumedAt = { A: stream.sent.A.length, B: stream.sent.B.length };
  await waitUntil(() => stream.sent.A.length >= resumedAt.A + 5 && stream.sent.B.length >= resumedAt.B + 5, DEFAULT_WAIT_MS, 'ticks accepted after the restart');
  stream.stop();
  await stream.done;

  await trigger(A, channel, 'resumed', { n: 1 });
  await expectExactlyOnce({ sinks, event: 'resumed', channel, match: { n: 1 }, what: 'trigger on A after Redis restart', via: A });
  await trigger(B, channel, 'resumed', { n: 2 });
  await expectExactlyOnce({ sinks, event: 'resumed', channel, match: { n: 2 }, what: 'trigger on B after Redis restart', via: B });
  rb.whisper(channel, 'client-resumed', { n: 3 });
  await expectExactlyOnce({ sinks: [ra, ra2, pa, pb], absent: [rb], event: 'client-resumed', channel, match: { n: 3 }, what: 'whisper from B after Redis restart', via: B });

  // the background stream: no tick twice anywhere; every tick accepted by a node reached that node's clients
  // (sentinels through A and B: each node's ticks are in before its sentinel)
  await awaitSentinel(A, channel, sinks);
  await awaitSentinel(B, channel, sinks);
  const { sent } = stream;
  assert.ok(sent.A.length > 0 && sent.B.length > 0, `the stream ran on both nodes (${sent.A.length}, ${sent.B.length})`);
  for (const s of sinks) {
    const got = ticks(s);
    assert.deepEqual(dups(got), [], `${s}: ticks delivered more than once`);
    assertNoDuplicateProbes(s, channel);
    for (const k of ['local', 'resumed', 'base']) {
      const ns = s.received(k, channel).map((d) => d.n);
      assert.deepEqual(dups(ns), [], `${s}: "${k}" delivered more than once`);
    }
  }
  for (const [label, local] of [['A', [ra, ra2, pa]], ['B', [rb, pb]]])
    for (const s of local) {
      const got = new Set(ticks(s));
      const missing = sent[label].filter((i) => !got.has(i));
      assert.deepEqual(missing, [], `${s}: ticks accepted by its own node ${label} but never delivered to it`);
    }
  // ticks after the restart reached the other node too
  for (const nd of nodes) assert.ok(nd.running, `${nd} still running`);
});

test(`presence and counts are cluster-wide again after the ${BROKER_NAME} restart`, async () => {
  await waitAllNodes(nodes, (n) => presenceUserIds(n, pres), ['1', '2'], 15000, 'presence users after the Redis restart');
  await waitAllNodes(nodes, (n) => channelInfo(n, pres, 'user_count,subscription_count'), { occupied: true, user_count: 2, subscription_count: 2 }, 5000, 'presence counts after the restart');
  const j = await RawClient.connect(B, { label: 'u3@B' });
  const ok = await j.subscribePresence(pres, 3);
  assert.deepEqual([...ok.parsed.presence.ids].map(String).sort(), ['1', '2', '3'], `joiner on B after the restart: ${JSON.stringify(ok.parsed.presence)}`);
  await waitUntil(() => presA.all((m) => m.event === 'pusher_internal:member_added' && String(m.parsed?.user_id) === '3').length === 1, DEFAULT_WAIT_MS, () => `u1@A sees member_added 3 (${presA.summary()})`);
  j.close();
  await waitUntil(() => presA.all((m) => m.event === 'pusher_internal:member_removed' && String(m.parsed?.user_id) === '3').length === 1, DEFAULT_WAIT_MS, () => `u1@A sees member_removed 3 (${presA.summary()})`);
  await presenceSettled(nodes, pres, [presA, presB], { leaves: true });
  // over the whole file (outage included) users 1 and 2 never left: no leave/re-join flap
  const history = (r) => r.all((m) => m.event.startsWith('pusher_internal:member_')).map((m) => `${m.event.slice(16)}(${m.parsed?.user_id})`);
  assert.deepEqual(history(presA), ['member_added(2)', 'member_added(3)', 'member_removed(3)'], `u1@A's presence events (user 2 never left; A and B were both cut off from Redis for a few seconds)`);
  assert.deepEqual(history(presB), ['member_added(3)', 'member_removed(3)'], `u2@B's presence events (user 1 never left)`);
});
