// 2. Targeted delivery across 3 nodes: socket_id exclusion, whispers (client events),
//    send-to-user (#server-to-user-{id}), terminate_connections, unsubscribe.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import {
  useCluster, RawClient, connectedPusher, pusherSink, ChannelRecorder, api, trigger, syncDelivery,
  expectExactlyOnce, countMatching, waitUntil, uid, DEFAULT_WAIT_MS,
} from '../lib/harness.js';

const h = useCluster();
let A, B, C, nodes;

before(async () => {
  [A, B, C] = await h.startCluster(3);
  nodes = [A, B, C];
});

test('socket_id exclusion works across nodes (excluded client on another node, and on the triggering node)', async () => {
  const channel = `private-${uid('excl')}`;
  const ra = await RawClient.connect(A, { label: 'raw@A' });
  const rb1 = await RawClient.connect(B, { label: 'raw@B1' });
  const rb2 = await RawClient.connect(B, { label: 'raw@B2' });
  const rc = await RawClient.connect(C, { label: 'raw@C' });
  const all = [ra, rb1, rb2, rc];
  for (const r of all) await r.subscribeChannel(channel);
  await syncDelivery(A, channel, all);

  // excluded socket lives on node B, trigger enters node A
  await trigger(A, channel, 'to-others', { n: 1 }, { socket_id: rb1.socketId });
  await expectExactlyOnce({ sinks: [ra, rb2, rc], absent: [rb1], event: 'to-others', channel, match: { n: 1 }, what: 'toOthers() with the sender on node B', via: A });

  // excluded socket lives on the triggering node A
  await trigger(A, channel, 'to-others', { n: 2 }, { socket_id: ra.socketId });
  await expectExactlyOnce({ sinks: [rb1, rb2, rc], absent: [ra], event: 'to-others', channel, match: { n: 2 }, what: 'toOthers() with the sender on node A', via: A });

  // excluded socket on node C, trigger enters node B
  await syncDelivery(B, channel, all);
  await trigger(B, channel, 'to-others', { n: 3 }, { socket_id: rc.socketId });
  await expectExactlyOnce({ sinks: [ra, rb1, rb2], absent: [rc], event: 'to-others', channel, match: { n: 3 }, what: 'toOthers() with the sender on node C', via: B });
});

test('whisper (client event) on a private channel reaches subscribers on every node once, never the sender', async () => {
  const channel = `private-${uid('chat')}`;
  const sender = await RawClient.connect(A, { label: 'sender@A' });
  const ra = await RawClient.connect(A, { label: 'raw@A' });
  const rb = await RawClient.connect(B, { label: 'raw@B' });
  const rc = await RawClient.connect(C, { label: 'raw@C' });
  for (const r of [sender, ra, rb, rc]) await r.subscribeChannel(channel);
  const pb = await pusherSink(await connectedPusher(B, { user: 30 }), channel);
  const receivers = [ra, rb, rc, pb];
  await syncDelivery(A, channel, [...receivers, sender]);

  sender.whisper(channel, 'client-typing', { n: 1, who: 'sender' });
  await expectExactlyOnce({ sinks: receivers, absent: [sender], event: 'client-typing', channel, match: { n: 1 }, what: 'whisper from node A', via: A });
  for (const r of [ra, rb, rc]) assert.deepEqual(r.received('client-typing', channel)[0], { n: 1, who: 'sender' }, `${r}: whisper payload`);
  assert.equal(sender.all((m) => m.event === 'pusher:error').length, 0, `sender got an error: ${sender.summary()}`);

  // and from a pusher-js client on node B
  await syncDelivery(B, channel, [ra, rc, sender]);
  pb.target.trigger('client-typing', { n: 2, who: 'pusher-js' });
  await expectExactlyOnce({ sinks: [ra, rb, rc, sender], absent: [pb], event: 'client-typing', channel, match: { n: 2 }, what: 'whisper from pusher-js on node B', via: B });
});

test('whisper on a presence channel carries the sender user_id on every node', async () => {
  const channel = `presence-${uid('chat')}`;
  const sender = await RawClient.connect(C, { label: 'sender@C' });
  const ra = await RawClient.connect(A, { label: 'raw@A' });
  const rb = await RawClient.connect(B, { label: 'raw@B' });
  await sender.subscribePresence(channel, 41);
  await ra.subscribePresence(channel, 42);
  await rb.subscribePresence(channel, 43);
  await syncDelivery(C, channel, [ra, rb, sender]);
  sender.whisper(channel, 'client-wave', { n: 1 });
  await expectExactlyOnce({ sinks: [ra, rb], absent: [sender], event: 'client-wave', channel, match: { n: 1 }, what: 'presence whisper from node C', via: C });
  for (const r of [ra, rb]) {
    const m = r.all((x) => x.event === 'client-wave' && x.channel === channel)[0];
    assert.equal(String(m.user_id), '41', `${r}: user_id of the sender on the delivered whisper (${JSON.stringify(m)})`);
  }
});

test('send-to-user: signed in on node B (and C), triggered on node A: every connection of that user once, nobody else', async () => {
  const user = 61;
  const channel = `#server-to-user-${user}`;
  const rawB = await RawClient.connect(B, { label: 'user61-raw@B' });
  await rawB.signin(user);
  await rawB.subscribeOk(channel);
  const pB = await connectedPusher(B, { user });
  const pC = await connectedPusher(C, { user });
  const recs = [];
  for (const p of [pB, pC]) {
    p.signin();
    await waitUntil(() => p.user.serverToUserChannel?.subscribed, DEFAULT_WAIT_MS, `${p.label} signed in and subscribed to ${channel}`);
    recs.push(new ChannelRecorder(p.user, channel, `${p.label}.user`));
  }
  // another signed-in user on node A must not get it
  const other = await RawClient.connect(A, { label: 'user62-raw@A' });
  await other.signin(62);
  await other.subscribeOk('#server-to-user-62');

  const sinks = [rawB, ...recs];
  await syncDelivery(A, channel, sinks);
  await trigger(A, channel, 'notice', { n: 1, text: 'for 61' });
  await expectExactlyOnce({ sinks, event: 'notice', channel, match: { n: 1 }, what: 'send-to-user entering node A', via: A });
  assert.equal(other.all((m) => m.event === 'notice').length, 0, `user 62 got user 61's notice: ${other.summary()}`);
  assert.deepEqual(recs[0].received('notice')[0], { n: 1, text: 'for 61' });
});

test('terminate_connections through node C closes the user\'s connections on every node with 4009; others stay', async () => {
  const user = 71;
  const victims = [];
  for (const n of nodes) {
    const r = await RawClient.connect(n, { label: `user71@${n.label}` });
    await r.signin(user);
    victims.push(r);
  }
  const pB = await connectedPusher(B, { user });
  pB.signin();
  await waitUntil(() => pB.user.serverToUserChannel?.subscribed, DEFAULT_WAIT_MS, `${pB.label} signed in`);
  const pErr = [];
  pB.connection.bind('error', (e) => pErr.push(e));
  const bystanders = [];
  for (const n of nodes) {
    const r = await RawClient.connect(n, { label: `user72@${n.label}` });
    await r.signin(72);
    bystanders.push(r);
  }

  const t0 = Date.now();
  const res = await api(C, 'POST', `/users/${user}/terminate_connections`, { body: {} });
  assert.equal(res.status, 200, res.text);

  const closes = await Promise.all(victims.map((v) => v.waitClose(DEFAULT_WAIT_MS, 'close after terminate_connections')));
  for (const [i, v] of victims.entries()) {
    assert.equal(closes[i].code, 4009, `${v}: close code`);
    const err = v.all((m) => m.event === 'pusher:error')[0];
    assert.ok(err, `${v}: pusher:error before the close; got ${v.summary()}`);
    assert.equal(err.parsed.code, 4009, `${v}: pusher:error code`);
  }
  await waitUntil(() => pB.connection.state === 'disconnected', DEFAULT_WAIT_MS, () => `${pB.label} disconnected (state ${pB.connection.state})`);
  assert.ok(Date.now() - t0 < DEFAULT_WAIT_MS + 1000);
  for (const b of bystanders) {
    assert.ok(b.isOpen, `${b} must stay connected`);
    await b.ping();
  }
});

test('unsubscribe on one node stops delivery there; the other nodes keep receiving', async () => {
  const channel = uid('unsub');
  const ra = await RawClient.connect(A, { label: 'raw@A' });
  const rb = await RawClient.connect(B, { label: 'raw@B' });
  // stays subscribed on node B: it sees the sentinel once B has handled everything before it
  const rbWatch = await RawClient.connect(B, { label: 'watch@B' });
  await ra.subscribeChannel(channel);
  await rb.subscribeChannel(channel);
  await rbWatch.subscribeChannel(channel);
  await syncDelivery(C, channel, [ra, rb, rbWatch]);
  rb.unsubscribe(channel);
  await rb.ping(); // node B has handled the unsubscribe
  await trigger(C, channel, 'after-unsub', { n: 1 });
  await expectExactlyOnce({ sinks: [ra, rbWatch], absent: [rb], event: 'after-unsub', channel, match: { n: 1 }, what: 'trigger after B unsubscribed', via: C, sentinelSinks: [ra, rbWatch] });
  await rb.ping(); // and anything node B queued for rb before the sentinel is in
  assert.ok(countMatching(rb, 'after-unsub', channel) === 0);
});
