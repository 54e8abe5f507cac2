// 8. raw protocol checks with `ws`.
import { test, before, describe } from 'node:test';
import assert from 'node:assert/strict';
import {
  useHarness, RawClient, trigger, uid, sleep, connectedPusher, waitForEvent, withTimeout, pusherClient,
} from '../lib/harness.js';
import { PUSHERJS_RETRY_GRACE_MS } from '../../common/sentinel.js';

const h = useHarness();
let server;
before(async () => {
  server = await h.startServer();
});

test('pusher:ping is answered with pusher:pong', async () => {
  const c = await RawClient.connect(server);
  const pong = await c.ping();
  assert.equal(pong.event, 'pusher:pong');
});

test('malformed JSON gets pusher:error and the connection stays open', async () => {
  const c = await RawClient.connect(server);
  c.send('{"event": "pusher:subscribe", "data": ');
  const err = await c.nextEvent('pusher:error');
  assert.equal(typeof err.parsed.message, 'string');
  assert.ok(err.parsed.code === null || (err.parsed.code >= 4000 && err.parsed.code < 5000), `code ${err.parsed.code}`);
  assert.ok(c.isOpen);
  await c.ping();
  c.send('not json at all');
  await c.nextEvent('pusher:error');
  c.send('{"no_event_field": true}');
  await c.ping();
  assert.ok(c.isOpen);
});

test('unknown pusher: event gets pusher:error; connection stays', async () => {
  const c = await RawClient.connect(server);
  c.send({ event: 'pusher:bogus', data: {} });
  await c.nextEvent('pusher:error');
  await c.ping();
});

test('unknown app key: pusher:error 4001 and close 4001', async () => {
  const c = await RawClient.open(server, { key: 'no-such-key' });
  const close = await c.waitClose(5000, 'close for unknown key');
  assert.equal(close.code, 4001);
  assert.equal(c.all((m) => m.event === 'pusher:connection_established').length, 0);
  const err = c.all((m) => m.event === 'pusher:error')[0];
  assert.ok(err, 'pusher:error sent before the close');
  assert.equal(err.parsed.code, 4001);
});

test('pusher-js with an unknown key does not reach "connected" and does not retry in a loop', async () => {
  const p = pusherClient(server, null, { key: 'no-such-key' });
  const states = [];
  p.connection.bind('state_change', ({ current }) => states.push(current));
  const [err] = await waitForEvent(p.connection, 'error', 5000, 'pusher-js error event');
  assert.equal(err.data?.code ?? err.error?.data?.code, 4001, JSON.stringify(err));
  // Client-side timing, no server path to send a sentinel on: see PUSHERJS_RETRY_GRACE_MS.
  await sleep(PUSHERJS_RETRY_GRACE_MS);
  assert.equal(p.connection.state, 'disconnected', `states: ${states}`);
  assert.ok(!states.includes('connected'), `states: ${states}`);
});

describe('cache channels', () => {
  test('subscribe with nothing cached gets pusher:cache_miss', async () => {
    const channel = `cache-${uid('x')}`;
    const c = await RawClient.connect(server);
    await c.subscribeOk(channel);
    const miss = await c.nextEvent('pusher:cache_miss', channel);
    assert.equal(miss.channel, channel);
  });

  test('after a trigger a new subscriber gets the last event immediately', async () => {
    const channel = `cache-${uid('y')}`;
    const first = await RawClient.connect(server);
    await first.subscribeOk(channel);
    await first.nextEvent('pusher:cache_miss', channel);
    await trigger(server, channel, 'price', { v: 1 });
    await trigger(server, channel, 'price', { v: 2 });
    await first.next((m) => m.event === 'price' && m.parsed.v === 2, 5000, 'price v2 on first');
    const second = await RawClient.connect(server);
    await second.subscribeOk(channel);
    const cached = await second.nextEvent('price', channel, 2000);
    assert.deepEqual(cached.parsed, { v: 2 }, 'the last event is replayed');
    await second.ping();
    assert.equal(second.all((m) => m.event === 'pusher:cache_miss').length, 0, 'no cache_miss when cached');
    assert.equal(second.all((m) => m.event === 'price').length, 1, 'only the last event is replayed');
  });

  test('pusher-js on a cache channel receives the cached event', async () => {
    const channel = `cache-${uid('z')}`;
    await trigger(server, channel, 'state', { s: 'on' });
    const p = await connectedPusher(server);
    const ch = p.subscribe(channel);
    const [data] = await waitForEvent(ch, 'state');
    assert.deepEqual(data, { s: 'on' });
  });
});

/** How long the ponging client is watched: > activity_timeout + pong_timeout (1 s + 1 s) with margin. */
const POLITE_WATCH_MS = 3500;

test('activity timeout: silent client gets pusher:ping, then close 4201; a ponging client stays', async () => {
  const s = await h.startServer({
    config: { server: { pong_timeout: 1 }, apps: [{ activity_timeout: 1 }] },
    env: { RESONANCE_PONG_TIMEOUT: '1' },
  });
  const [silent, polite] = await Promise.all([
    RawClient.open(s, { autoPong: false }),
    RawClient.open(s),
  ]);
  await Promise.all([silent.established(), polite.established()]);
  assert.equal(silent.activityTimeout, 1, 'activity_timeout from the config');
  polite.ws.on('message', (buf) => {
    if (JSON.parse(buf.toString()).event === 'pusher:ping') polite.send({ event: 'pusher:pong', data: {} });
  });
  const start = Date.now();
  await silent.nextEvent('pusher:ping', undefined, 4000);
  const close = await silent.waitClose(5000, 'close after missing pong');
  assert.equal(close.code, 4201);
  assert.ok(Date.now() - start < 8000);
  // the polite client answered its pings and is still connected
  // Inherently time-based: by then a client that never ponged is long cut (activity_timeout 1 s +
  // pong_timeout 1 s above), so the ponging one was watched over more than one ping cycle.
  await sleep(Math.max(0, POLITE_WATCH_MS - (Date.now() - start)));
  assert.ok(polite.isOpen, `ponging client was closed: ${JSON.stringify(polite.closeInfo)}`);
  assert.ok(polite.all((m) => m.event === 'pusher:ping').length >= 1, 'polite client was pinged');
  await polite.ping();
});

test('allowed_origins: other Origin closed with 4009, allowed Origin connects', async () => {
  const s = await h.startServer({ config: { apps: [{ allowed_origins: ['https://app.example.com'] }] } });
  const bad = await RawClient.open(s, { headers: { Origin: 'https://evil.example.com' } });
  const close = await bad.waitClose(5000, 'close for a disallowed Origin');
  assert.equal(close.code, 4009);
  assert.equal(bad.all((m) => m.event === 'pusher:connection_established').length, 0);
  const good = await RawClient.connect(s, { headers: { Origin: 'https://app.example.com' } });
  assert.match(good.socketId, /^\d+\.\d+$/);
  await good.ping();
});

test('max_connections=1: second connection closed with 4004; slot freed after the first leaves', async () => {
  const s = await h.startServer({ env: { RESONANCE_APP_MAX_CONNECTIONS: '1' } });
  const first = await RawClient.connect(s);
  const second = await RawClient.open(s);
  const close = await second.waitClose(5000, 'close of the connection over the quota');
  assert.equal(close.code, 4004);
  assert.equal(second.all((m) => m.event === 'pusher:connection_established').length, 0);
  assert.ok(first.isOpen);
  await first.ping();
  first.ws.close(1000);
  await first.waitClose();
  // the slot is released (the server may need a moment to notice)
  const deadline = Date.now() + 5000;
  let third;
  for (;;) {
    third = await RawClient.open(s);
    const r = await Promise.race([third.established().then(() => 'ok'), third.closed.then(() => 'closed')]);
    if (r === 'ok') break;
    if (Date.now() > deadline) assert.fail(`slot not released: ${JSON.stringify(third.closeInfo)}`);
    await sleep(100);
  }
  await third.ping();
});

test('graceful shutdown: SIGTERM gives pusher:error 4200 then close 4200; process exits', async () => {
  const s = await h.startServer({ env: { RESONANCE_SHUTDOWN_GRACE: '3' } });
  const c = await RawClient.connect(s);
  await c.subscribeOk(uid('shutdown'));
  s.signal('SIGTERM');
  const close = await c.waitClose(5000, 'close on shutdown');
  const err = c.all((m) => m.event === 'pusher:error')[0];
  assert.ok(err, `pusher:error before close; got ${c.summary()}`);
  assert.equal(err.parsed.code, 4200);
  assert.equal(close.code, 4200);
  const exit = await withTimeout(s.exited, 8000, 'server process exit after SIGTERM');
  assert.equal(exit.code, 0, `exit ${JSON.stringify(exit)}\n${s.logTail(20)}`);
});
