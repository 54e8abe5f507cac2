// 2. public channels: events triggered through the signed HTTP API reach subscribers;
//    socket_id in the trigger excludes that connection (toOthers).
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { useHarness, connectedPusher, subscribe, waitForEvent, trigger, Recorder, uid, pusherRoundTrip } from '../lib/harness.js';

const h = useHarness();
let server;
before(async () => {
  server = await h.startServer();
});

test('event triggered via the HTTP API arrives with the right data', async () => {
  const channel = uid('public');
  const p = await connectedPusher(server);
  const ch = await subscribe(p, channel);
  const payload = { order: 42, text: 'héllo "world"', nested: { list: [1, 2, 3] } };
  const got = waitForEvent(ch, 'OrderShipped');
  await trigger(server, channel, 'OrderShipped', payload);
  const [data] = await got;
  assert.deepEqual(data, payload);
});

test('one trigger to several channels reaches each of them', async () => {
  const c1 = uid('multi-a');
  const c2 = uid('multi-b');
  const p = await connectedPusher(server);
  const [ch1, ch2] = await Promise.all([subscribe(p, c1), subscribe(p, c2)]);
  const got = Promise.all([waitForEvent(ch1, 'multi', 5000, 'multi on ch1'), waitForEvent(ch2, 'multi', 5000, 'multi on ch2')]);
  await trigger(server, [c1, c2], 'multi', { n: 7 });
  const [[d1], [d2]] = await got;
  assert.deepEqual(d1, { n: 7 });
  assert.deepEqual(d2, { n: 7 });
});

test('socket_id in the trigger excludes that connection while others still get it', async () => {
  const channel = uid('public-others');
  const [a, b] = await Promise.all([connectedPusher(server), connectedPusher(server)]);
  const [cha, chb] = await Promise.all([subscribe(a, channel), subscribe(b, channel)]);
  const recA = new Recorder(cha, ['excluded', 'sentinel']);
  const recB = new Recorder(chb, ['excluded', 'sentinel']);

  await trigger(server, channel, 'excluded', { from: 'a' }, { socket_id: a.connection.socket_id });
  const gotB = await recB.waitFor('excluded');
  assert.deepEqual(gotB.data, { from: 'a' });

  // sentinel: a later event to the same channel; once A has it, an earlier delivery would have arrived
  await trigger(server, channel, 'sentinel', { n: 1 });
  await recA.waitFor('sentinel');
  await recB.waitFor('sentinel');
  assert.equal(recA.of('excluded').length, 0, 'the excluded socket must not receive the event');
  assert.equal(recB.of('excluded').length, 1, 'the other socket receives it exactly once');
});

test('unsubscribed connection no longer receives events', async () => {
  const channel = uid('public-unsub');
  const sentinel = uid('sentinel');
  const [a, b] = await Promise.all([connectedPusher(server), connectedPusher(server)]);
  const [, chb] = await Promise.all([subscribe(a, channel), subscribe(b, channel)]);
  const sa = await subscribe(a, sentinel);
  const recA = new Recorder(a, ['after-unsub']); // global binding: any channel
  a.unsubscribe(channel);
  await pusherRoundTrip(a); // the unsubscribe has been processed
  const gotB = waitForEvent(chb, 'after-unsub');
  await trigger(server, channel, 'after-unsub', { x: 1 });
  await gotB;
  const s = waitForEvent(sa, 's');
  await trigger(server, sentinel, 's', {});
  await s;
  assert.equal(recA.of('after-unsub').length, 0, 'event delivered after unsubscribe');
});
