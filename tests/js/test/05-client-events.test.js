// 5. client events (whispers) on private and presence channels.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import {
  useHarness, connectedPusher, subscribe, trigger, Recorder, RawClient, uid, waitUntil,
} from '../lib/harness.js';

const h = useHarness();
let server, auth;
before(async () => {
  server = await h.startServer();
  auth = await h.startAuth(server.app);
});

test('whisper on a private channel reaches others, not the sender', async () => {
  const channel = `private-${uid('chat')}`;
  const [a, b, c] = await Promise.all([1, 2, 3].map((u) => connectedPusher(server, auth, { user: String(u) })));
  const [cha, chb, chc] = await Promise.all([a, b, c].map((p) => subscribe(p, channel)));
  const recA = new Recorder(cha, ['client-typing', 'sentinel']);
  const recB = new Recorder(chb, ['client-typing']);
  const recC = new Recorder(chc, ['client-typing']);
  assert.equal(cha.trigger('client-typing', { name: 'Alice', n: 1 }), true, 'pusher-js accepted the trigger');
  const gotB = await recB.waitFor('client-typing');
  const gotC = await recC.waitFor('client-typing');
  assert.deepEqual(gotB.data, { name: 'Alice', n: 1 });
  assert.deepEqual(gotC.data, { name: 'Alice', n: 1 });
  await trigger(server, channel, 'sentinel', {});
  await recA.waitFor('sentinel');
  assert.equal(recA.of('client-typing').length, 0, 'whisper echoed back to the sender');
});

test('whisper on a presence channel carries the sender user_id (pusher-js metadata and wire)', async () => {
  const channel = `presence-${uid('room')}`;
  const a = await connectedPusher(server, auth, { user: '1' });
  const b = await connectedPusher(server, auth, { user: '2' });
  const raw = await RawClient.connect(server);
  const [cha, chb] = await Promise.all([subscribe(a, channel), subscribe(b, channel)]);
  await raw.subscribePresence(channel, '3');
  const recA = new Recorder(cha, ['client-typing', 'sentinel']);
  const recB = new Recorder(chb, ['client-typing']);
  cha.trigger('client-typing', { typing: true });
  const got = await recB.waitFor('client-typing');
  assert.deepEqual(got.data, { typing: true });
  assert.equal(String(got.metadata?.user_id), '1', `metadata: ${JSON.stringify(got.metadata)}`);
  const wire = await raw.nextEvent('client-typing', channel);
  assert.equal(String(wire.user_id), '1', `raw frame: ${JSON.stringify(wire)}`);
  assert.deepEqual(wire.parsed, { typing: true });
  // whisper from the raw client (user 3) reaches pusher-js with user_id 3
  const recB2 = new Recorder(chb, ['client-wave']);
  raw.send({ event: 'client-wave', channel, data: { hi: 1 } });
  const wave = await recB2.waitFor('client-wave');
  assert.equal(String(wave.metadata?.user_id), '3');
  await trigger(server, channel, 'sentinel', {});
  await recA.waitFor('sentinel');
  assert.equal(recA.of('client-typing').length, 0, 'whisper echoed back to the sender');
});

test('client event with a forged user_id is delivered with the real sender id', async () => {
  const channel = `presence-${uid('spoof')}`;
  const a = await RawClient.connect(server);
  const b = await RawClient.connect(server);
  await a.subscribePresence(channel, '1');
  await b.subscribePresence(channel, '2');
  a.send({ event: 'client-x', channel, data: { v: 1 }, user_id: '2' });
  const m = await b.nextEvent('client-x', channel);
  assert.equal(String(m.user_id), '1');
});

test('client events are refused on public channels and from non-subscribers', async () => {
  const pub = uid('public');
  const priv = `private-${uid('notsub')}`;
  const sender = await RawClient.connect(server);
  const listener = await RawClient.connect(server);
  await sender.subscribeOk(pub);
  await listener.subscribeOk(pub);
  await listener.subscribePrivate(priv);

  sender.send({ event: 'client-x', channel: pub, data: {} });
  const e1 = await sender.nextEvent('pusher:error');
  assert.equal(typeof e1.parsed.message, 'string');
  sender.send({ event: 'client-x', channel: priv, data: {} }); // not subscribed
  const e2 = await sender.nextEvent('pusher:error');
  assert.equal(typeof e2.parsed.message, 'string');
  assert.ok(sender.isOpen);

  await trigger(server, pub, 'sentinel', {});
  await trigger(server, priv, 'sentinel', {});
  await listener.nextEvent('sentinel', pub);
  await listener.nextEvent('sentinel', priv);
  assert.equal(listener.all((m) => m.event === 'client-x').length, 0, 'refused client event was delivered');
});

test('flood of client events (>10/s) gets pusher:error 4301; another client is unaffected', async () => {
  const channel = `private-${uid('flood')}`;
  const flooder = await RawClient.connect(server);
  const calm = await RawClient.connect(server);
  const listener = await RawClient.connect(server);
  await flooder.subscribePrivate(channel);
  await calm.subscribePrivate(channel);
  await listener.subscribePrivate(channel);

  const SENT = 40;
  for (let i = 0; i < SENT; i++) flooder.send({ event: 'client-flood', channel, data: { i } });
  const err = await flooder.next((m) => m.event === 'pusher:error' && m.parsed?.code === 4301, 5000, 'pusher:error 4301');
  assert.equal(typeof err.parsed.message, 'string');
  assert.ok(flooder.isOpen, 'rate limited connection must stay open');
  await flooder.ping();

  // the calm client can still whisper (and is not rate limited)
  calm.send({ event: 'client-calm', channel, data: { ok: true } });
  const m = await listener.nextEvent('client-calm', channel);
  assert.deepEqual(m.parsed, { ok: true });
  await calm.ping();
  assert.equal(calm.all((x) => x.event === 'pusher:error').length, 0, 'calm client got an error');

  await trigger(server, channel, 'sentinel', {});
  await listener.nextEvent('sentinel', channel);
  const delivered = listener.all((x) => x.event === 'client-flood').length;
  assert.ok(delivered >= 1, 'some flood events within the rate are delivered');
  assert.ok(delivered <= 20, `rate limit let ${delivered} of ${SENT} events through in a burst`);
  assert.ok(flooder.all((x) => x.event === 'pusher:error' && x.parsed?.code === 4301).length >= 1);
});

test('after the rate window passes the flooder may whisper again', async () => {
  const channel = `private-${uid('recover')}`;
  const flooder = await RawClient.connect(server);
  const listener = await RawClient.connect(server);
  await flooder.subscribePrivate(channel);
  await listener.subscribePrivate(channel);
  for (let i = 0; i < 30; i++) flooder.send({ event: 'client-f', channel, data: { i } });
  await flooder.next((m) => m.event === 'pusher:error' && m.parsed?.code === 4301, 5000, 'pusher:error 4301');
  // The rate window is a fixed 1 s (core/rules.rs RateLimit): instead of sleeping past it, whisper
  // every 100 ms until one gets through (each refused try only costs a 4301 to the flooder).
  let tries = 0;
  await waitUntil(
    () => {
      flooder.send({ event: 'client-again', channel, data: { ok: ++tries } });
      return listener.all((x) => x.event === 'client-again').length > 0;
    },
    5000,
    () => `a whisper getting through after the rate window (${tries} tries)`,
    100,
  );
});

test('client events refused when RESONANCE_APP_CLIENT_EVENTS=false', async () => {
  const off = await h.startServer({ env: { RESONANCE_APP_CLIENT_EVENTS: 'false' } });
  const offAuth = await h.startAuth(off.app);
  const channel = `private-${uid('off')}`;
  const sender = await RawClient.connect(off);
  const listener = await connectedPusher(off, offAuth, { user: '2' });
  await sender.subscribePrivate(channel);
  const ch = await subscribe(listener, channel);
  const rec = new Recorder(ch, ['client-typing', 'sentinel']);
  sender.send({ event: 'client-typing', channel, data: { x: 1 } });
  const err = await sender.nextEvent('pusher:error');
  assert.equal(typeof err.parsed.message, 'string');
  assert.ok(sender.isOpen, 'connection stays open');
  await trigger(off, channel, 'sentinel', {});
  await rec.waitFor('sentinel');
  assert.equal(rec.of('client-typing').length, 0, 'client event delivered although disabled');
});
