// 13. Interest-based routing: a node takes a channel's events from the broker only while it has
//     local subscribers (Redis: a SUBSCRIBE to `{prefix}#ch#{app}#{channel}` from the first local
//     subscriber to the last; Redis Cluster: an SSUBSCRIBE to a shard channel named after it; NATS:
//     a subscription to a subject containing it; counted by the broker, see brokers.js), confirms a subscription only once that route is active (an event
//     triggered the moment the client hears "subscribed" is never lost), and survives
//     subscribe/unsubscribe flapping with one route and exactly-once delivery.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import {
  useCluster, RawClient, trigger, syncDelivery, expectExactlyOnce, countMatching, waitUntil, uid, APP, DEFAULT_WAIT_MS,
  freePort, waitReady, skipNote, BROKER_NAME,
} from '../lib/harness.js';

const h = useCluster();
let A, B, C, D, broker, proxy;

/**
 * A TCP proxy to the broker that holds every chunk carrying a subscription to a channel route
 * (`target.subscribesRoute`) for `delayMs` (and, to keep the byte order, everything behind it on
 * that connection): a node behind it subscribes late, as a node whose broker is slow or far away
 * would.
 */
async function slowSubscribeProxy(target, delayMs) {
  const port = await freePort();
  const sockets = new Set();
  const server = net.createServer((client) => {
    const upstream = net.connect(target.port, '127.0.0.1');
    sockets.add(client).add(upstream);
    let chain = Promise.resolve();
    client.on('data', (chunk) => {
      const slow = target.subscribesRoute(chunk.toString('latin1'));
      chain = chain.then(() => new Promise((r) => setTimeout(r, slow ? delayMs : 0))).then(() => upstream.write(chunk));
    });
    upstream.on('data', (chunk) => client.write(chunk));
    const end = () => {
      client.destroy();
      upstream.destroy();
    };
    client.on('error', end).on('close', end);
    upstream.on('error', end).on('close', end);
  });
  await new Promise((r) => server.listen(port, '127.0.0.1', r));
  return {
    url: target.url(port),
    close() {
      for (const s of sockets) s.destroy();
      server.close();
    },
  };
}

before(async () => {
  broker = await h.broker();
  [A, B, C] = await h.startCluster(3);
  if (!broker.proxy) return; // see the slow-subscribe test
  proxy = await slowSubscribeProxy(broker.proxy, 600);
  D = await h.startNode({ label: 'D(slow subscribe)', brokerUrl: proxy.url });
  await waitReady([D]);
});
after(() => proxy?.close());

/** How many nodes take `channel`'s events from the broker (Redis: PUBSUB NUMSUB of its route). */
function routes(channel) {
  return broker.routes(APP.id, channel);
}

async function expectRoutes(channel, n, what) {
  let last;
  await waitUntil(async () => (last = await routes(channel)) === n, DEFAULT_WAIT_MS, () => `${what}: ${n} node(s) subscribed to ${channel}'s route (got ${last})`, 20);
}

test('a node subscribes to a channel route on its first local subscriber and leaves it with the last', async () => {
  const channel = uid('routed');
  assert.equal(await routes(channel), 0, 'nobody subscribed yet');
  const b1 = await RawClient.connect(B, { label: 'raw@B1' });
  const b2 = await RawClient.connect(B, { label: 'raw@B2' });
  const c1 = await RawClient.connect(C, { label: 'raw@C1' });
  await b1.subscribeOk(channel);
  // confirmed only once the route is active: no polling needed
  assert.equal(await routes(channel), 1, 'node B subscribed before confirming');
  await b2.subscribeOk(channel);
  assert.equal(await routes(channel), 1, 'a second local subscriber adds no route');
  await c1.subscribeOk(channel);
  assert.equal(await routes(channel), 2, 'node C subscribed before confirming');

  await trigger(A, channel, 'routed-event', { n: 1 });
  await expectExactlyOnce({ sinks: [b1, b2, c1], event: 'routed-event', channel, match: { n: 1 }, what: 'event from a node without subscribers', via: A });

  b1.unsubscribe(channel);
  b2.unsubscribe(channel);
  await expectRoutes(channel, 1, 'after both B clients unsubscribed');
  await trigger(B, channel, 'routed-event', { n: 2 });
  await expectExactlyOnce({ sinks: [c1], absent: [b1, b2], event: 'routed-event', channel, match: { n: 2 }, what: 'event entering a node that left the route', via: B, sentinelSinks: [c1] });
  c1.close();
  await expectRoutes(channel, 0, 'after the last subscriber disconnected');
});

test('an event triggered the moment a subscription is confirmed is never lost (40 channels, first subscriber on its node)', async () => {
  const channels = Array.from({ length: 40 }, (_, i) => uid(`race${i}`));
  const clients = await Promise.all([B, C].map((n, i) => RawClient.connect(n, { label: `raw@${n.label}${i}` })));
  await Promise.all(
    channels.map(async (channel, i) => {
      const client = clients[i % 2];
      await client.subscribeOk(channel);
      await trigger(A, channel, 'right-after', { i });
    }),
  );
  for (const [i, channel] of channels.entries()) {
    const client = clients[i % 2];
    await waitUntil(() => countMatching(client, 'right-after', channel, { i }) >= 1, DEFAULT_WAIT_MS, () => `${client}: right-after ${i} on ${channel} (got ${client.summary()})`, 20);
  }
  for (const [i, channel] of channels.entries()) assert.equal(countMatching(clients[i % 2], 'right-after', channel, { i }), 1, `once on ${channel}`);
});

test('a node whose SUBSCRIBE is slow confirms only once it is routed: an event triggered right after the confirmation arrives', async (t) => {
  if (!D) {
    const why = `a proxy in front of ${BROKER_NAME}'s seeds is not on a cluster client's path (it connects to the addresses the cluster announces)`;
    skipNote(`the slow-subscribe node: ${why}`);
    t.skip(why);
    return;
  }
  for (let round = 0; round < 3; round++) {
    const channel = uid(`slow${round}`);
    const d = await RawClient.connect(D, { label: `raw@D${round}` });
    const t0 = Date.now();
    await d.subscribeOk(channel);
    const waited = Date.now() - t0;
    await trigger(A, channel, 'right-after', { round });
    await waitUntil(() => countMatching(d, 'right-after', channel, { round }) >= 1, DEFAULT_WAIT_MS,
      () => `${d}: the event triggered through A right after the confirmation (confirmed after ${waited} ms; got ${d.summary()})`, 20);
    assert.ok(waited >= 500, `confirmation waited for the delayed SUBSCRIBE (${waited} ms)`);
  }
});

test('subscribe/unsubscribe flapping leaves one route and exactly-once delivery', async () => {
  const channel = uid('flap');
  const flapper = await RawClient.connect(B, { label: 'flapper@B' });
  const steady = await RawClient.connect(C, { label: 'steady@C' });
  await steady.subscribeOk(channel);
  for (let i = 0; i < 25; i++) {
    flapper.send({ event: 'pusher:subscribe', data: { channel } });
    flapper.send({ event: 'pusher:unsubscribe', data: { channel } });
  }
  await flapper.subscribeOk(channel);
  assert.equal(await routes(channel), 2, 'B and C subscribed to the route');
  await syncDelivery(A, channel, [flapper, steady]);
  await trigger(A, channel, 'after-flap', { n: 1 });
  await expectExactlyOnce({ sinks: [flapper, steady], event: 'after-flap', channel, match: { n: 1 }, what: 'event after flapping', via: A });
  flapper.unsubscribe(channel);
  await expectRoutes(channel, 1, 'after the flapper left');
  // Many clients of one node coming and going together: the route follows the last one.
  const many = await Promise.all(Array.from({ length: 12 }, (_, i) => RawClient.connect(B, { label: `many@B${i}` })));
  await Promise.all(many.map((c) => c.subscribeOk(channel)));
  assert.equal(await routes(channel), 2);
  for (const c of many.slice(1)) c.close();
  await trigger(A, channel, 'after-flap', { n: 2 });
  await expectExactlyOnce({ sinks: [many[0], steady], event: 'after-flap', channel, match: { n: 2 }, what: 'event to the remaining subscriber', via: A });
  many[0].close();
  await expectRoutes(channel, 1, 'after every B client left');
});
