// Shared cases for the Laravel Redis ingestion files (07: prefix "laravel_database_", 08: empty
// prefix): 2 nodes of one cluster; events Laravel PUBLISHes straight to Redis are consumed by
// every node for its own clients, once per client; cluster traffic is never ingested.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import {
  useCluster, RawClient, connectedPusher, pusherSink, trigger, syncDelivery, expectExactlyOnce, laravelPayload,
  presenceSettled, waitUntil, sleep, uid, skipNote, PROBE_EVENT, SENTINEL_EVENT, SYNC_WAIT_MS,
} from './harness.js';

const EVENT = 'App\\Events\\OrderShipped';

/** PUBLISH Laravel probe payloads on `prefix+channel` until every sink received one. */
async function syncRedis(redis, prefix, channel, sinks, ms = SYNC_WAIT_MS) {
  const deadline = Date.now() + ms;
  const has = (s) => s.received(PROBE_EVENT, channel).length > 0;
  let seq = 0;
  let receivers;
  for (;;) {
    receivers = await redis.publish(`${prefix}${channel}`, laravelPayload(PROBE_EVENT, { probe: `redis-${++seq}` }));
    const stepEnd = Math.min(deadline, Date.now() + 300);
    while (Date.now() < stepEnd && !sinks.every(has)) await sleep(20);
    if (sinks.every(has)) return;
    if (Date.now() >= deadline)
      throw new Error(`Laravel ingestion never delivered: ${seq} probes PUBLISHed on "${prefix}${channel}" (last PUBLISH receivers: ${receivers}) never reached ${JSON.stringify(sinks.filter((s) => !has(s)).map(String))}`);
  }
}

export function defineLaravelTests(prefix) {
  const h = useCluster();
  let redis, broker, A, B;
  const what = `prefix ${JSON.stringify(prefix)}`;

  /** Sentinel sender for expectExactlyOnce: a Laravel PUBLISH on the same Redis channel. */
  const laravelVia = (channel) => (event, data) => redis.publish(`${prefix}${channel}`, laravelPayload(event, data));

  before(async () => {
    broker = await h.broker();
    redis = await h.redis();
    [A, B] = await h.startCluster(2, { laravelPrefix: prefix });
  });

  async function clientsOn(channel) {
    const ra = await RawClient.connect(A, { label: 'raw@A' });
    const rb = await RawClient.connect(B, { label: 'raw@B' });
    await ra.subscribeChannel(channel);
    await rb.subscribeChannel(channel);
    const pa = await pusherSink(await connectedPusher(A, { user: 1 }), channel);
    const pb = await pusherSink(await connectedPusher(B, { user: 2 }), channel);
    return { ra, rb, pa, pb, sinks: [ra, rb, pa, pb] };
  }

  for (const kind of ['public', 'private']) {
    test(`${what}: a Laravel PUBLISH on a ${kind} channel reaches every client on both nodes exactly once`, async () => {
      const channel = kind === 'public' ? uid('orders') : `private-${uid('orders')}`;
      const { sinks } = await clientsOn(channel);
      await syncRedis(redis, prefix, channel, sinks);
      for (let i = 1; i <= 3; i++) {
        const receivers = await redis.publish(`${prefix}${channel}`, laravelPayload(EVENT, { id: i }));
        if (broker.laravelReceiversCounted) assert.ok(receivers >= 1, `PUBLISH receivers ${receivers}`);
        else skipNote(`PUBLISH's receiver count (${broker.name}: it counts the receivers connected to the node it was sent to only)`);
        await expectExactlyOnce({ sinks, event: EVENT, channel, match: { id: i }, what: `Laravel publish #${i}`, via: laravelVia(channel) });
      }
      for (const s of sinks) assert.deepEqual(s.received(EVENT, channel), [{ id: 1 }, { id: 2 }, { id: 3 }], `${s}: the three Laravel events, once each, in order`);
    });
  }

  test(`${what}: Laravel multi-channel publish (EVAL) reaches each channel's clients on both nodes once`, async () => {
    const c1 = uid('multi-a');
    const c2 = `private-${uid('multi-b')}`;
    const ra = await RawClient.connect(A, { label: 'raw@A' });
    const rb = await RawClient.connect(B, { label: 'raw@B' });
    for (const r of [ra, rb]) {
      await r.subscribeChannel(c1);
      await r.subscribeChannel(c2);
    }
    await syncRedis(redis, prefix, c1, [ra, rb]);
    await syncRedis(redis, prefix, c2, [ra, rb]);
    await redis.evalPublish(laravelPayload(EVENT, { id: 42 }), [`${prefix}${c1}`, `${prefix}${c2}`]);
    await expectExactlyOnce({ sinks: [ra, rb], event: EVENT, channel: c1, match: { id: 42 }, what: 'EVAL publish (c1)', via: laravelVia(c1) });
    await expectExactlyOnce({ sinks: [ra, rb], event: EVENT, channel: c2, match: { id: 42 }, what: 'EVAL publish (c2)', via: laravelVia(c2) });
  });

  test(`${what}: "socket" in the Laravel payload excludes that connection on whichever node it is`, async () => {
    const channel = `private-${uid('others')}`;
    const { ra, rb, pa, pb, sinks } = await clientsOn(channel);
    await syncRedis(redis, prefix, channel, sinks);
    await redis.publish(`${prefix}${channel}`, laravelPayload(EVENT, { id: 1 }, rb.socketId));
    await expectExactlyOnce({ sinks: [ra, pa, pb], absent: [rb], event: EVENT, channel, match: { id: 1 }, what: 'toOthers() publish, sender on B', via: laravelVia(channel) });
    await redis.publish(`${prefix}${channel}`, laravelPayload(EVENT, { id: 2 }, ra.socketId));
    await expectExactlyOnce({ sinks: [rb, pa, pb], absent: [ra], event: EVENT, channel, match: { id: 2 }, what: 'toOthers() publish, sender on A', via: laravelVia(channel) });
  });

  test(`${what}: cluster traffic (API triggers, whispers, presence) is not picked up by the ingestion: once per client, nothing extra`, async () => {
    const channel = `presence-${uid('mixed')}`;
    const ra = await RawClient.connect(A, { label: 'raw@A' });
    const rb = await RawClient.connect(B, { label: 'raw@B' });
    await ra.subscribePresence(channel, 11);
    await rb.subscribePresence(channel, 12);
    await syncDelivery(A, channel, [ra, rb]);
    await syncDelivery(B, channel, [ra, rb]);

    await trigger(A, channel, 'api-event', { n: 1 });
    await expectExactlyOnce({ sinks: [ra, rb], event: 'api-event', channel, match: { n: 1 }, what: 'API trigger on A', via: A });
    await trigger(B, channel, 'api-event', { n: 2 }, { socket_id: ra.socketId });
    await expectExactlyOnce({ sinks: [rb], absent: [ra], event: 'api-event', channel, match: { n: 2 }, what: 'API trigger on B excluding A\'s client', via: B });
    ra.whisper(channel, 'client-hi', { n: 3 });
    await expectExactlyOnce({ sinks: [rb], absent: [ra], event: 'client-hi', channel, match: { n: 3 }, what: 'whisper from A', via: A });

    const rc = await RawClient.connect(B, { label: 'raw13@B' });
    await rc.subscribePresence(channel, 13);
    const addedTo = (r) => r.all((m) => m.event === 'pusher_internal:member_added' && String(m.parsed?.user_id) === '13').length;
    await waitUntil(() => addedTo(ra) >= 1 && addedTo(rb) >= 1, 5000, () => `member_added 13 at A and B (A ${addedTo(ra)}, B ${addedTo(rb)})`);
    await redis.publish(`${prefix}${channel}`, laravelPayload(EVENT, { id: 9 }));
    await expectExactlyOnce({ sinks: [ra, rb, rc], event: EVENT, channel, match: { id: 9 }, what: 'Laravel publish on the presence channel', via: laravelVia(channel) });
    await presenceSettled([A, B], channel, [ra, rb, rc]); // a second member_added 13 would be in by now
    assert.equal(addedTo(ra), 1, 'member_added 13 once at A');
    assert.equal(addedTo(rb), 1, 'member_added 13 once at B');

    // nothing but what we sent
    const expected = new Set(['pusher:connection_established', 'pusher_internal:subscription_succeeded', 'pusher_internal:member_added', 'pusher:pong', PROBE_EVENT, SENTINEL_EVENT, 'api-event', 'client-hi', EVENT]);
    for (const r of [ra, rb, rc]) {
      const extra = r.all((m) => !expected.has(m.event));
      assert.deepEqual(extra.map((m) => `${m.event}@${m.channel}`), [], `${r}: unexpected frames (cluster messages leaking through the ingestion?)`);
      const wrongChannel = r.all((m) => m.channel !== undefined && m.channel !== channel);
      assert.deepEqual(wrongChannel.map((m) => `${m.event}@${m.channel}`), [], `${r}: frames on channels it never subscribed`);
    }
  });

  test(`${what}: both nodes keep running; a malformed Laravel payload is dropped by both`, async () => {
    const channel = uid('bad');
    const ra = await RawClient.connect(A, { label: 'raw@A' });
    const rb = await RawClient.connect(B, { label: 'raw@B' });
    await ra.subscribeChannel(channel);
    await rb.subscribeChannel(channel);
    await syncRedis(redis, prefix, channel, [ra, rb]);
    await redis.publish(`${prefix}${channel}`, 'not json at all');
    await redis.publish(`${prefix}${channel}`, laravelPayload(EVENT, { id: 'after-bad' }));
    await expectExactlyOnce({ sinks: [ra, rb], event: EVENT, channel, match: { id: 'after-bad' }, what: 'valid publish after a malformed one', via: laravelVia(channel) });
    assert.ok(A.running && B.running, 'both nodes running');
  });
}
