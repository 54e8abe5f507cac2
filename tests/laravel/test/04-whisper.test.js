// 4. Whispers (client events) across Socket.IO 2.x, 4.x and pusher-js on one private channel.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import {
  useHarness, SioClient, connectedPusher, pusherSubscribe, capture, waitSubscriptions, userInfo, uid,
} from '../lib/harness.js';

const h = useHarness();
let server, auth;

before(async () => {
  const redis = await h.redis();
  auth = await h.startAuth();
  server = await h.startServer({ redis, auth });
});

test('Echo socket.io whisper reaches the other socket.io client and pusher-js, not the sender; pusher-js whisper reaches socket.io', async () => {
  const name = uid('chat');
  const channel = `private-${name}`;
  const A = await SioClient.connect(server, { version: 2, cookie: 'laravel_session=7' });
  const B = await SioClient.connect(server, { version: 4, cookie: 'laravel_session=8' });
  const aCh = A.echo.private(name);
  const bCh = B.echo.private(name);
  const aGot = capture('A listenForWhisper');
  const bGot = capture('B listenForWhisper');
  aCh.listenForWhisper('typing', aGot.cb);
  bCh.listenForWhisper('typing', bGot.cb);
  const p = await connectedPusher(server, { user: 9 });
  const pch = await pusherSubscribe(p, channel);
  const pGot = capture('pusher-js client-typing');
  pch.bind('client-typing', pGot.cb);
  await waitSubscriptions(server, channel, 3);

  // 2.x whispers
  aCh.whisper('typing', { name: 'Grace', n: 1 });
  assert.deepEqual((await bGot.nth(1))[0], { name: 'Grace', n: 1 }, '4.x client got the 2.x whisper');
  assert.deepEqual(await B.nextEvent('client-typing', channel), ['client-typing', channel, { name: 'Grace', n: 1 }], 'wire 42["client-typing","<channel>",<data>]');
  assert.deepEqual((await pGot.nth(1))[0], { name: 'Grace', n: 1 }, 'pusher-js got the socket.io whisper');

  // 4.x whispers
  bCh.whisper('typing', { name: 'Heidi', n: 2 });
  assert.deepEqual((await aGot.nth(1))[0], { name: 'Heidi', n: 2 }, '2.x client got the 4.x whisper');
  assert.deepEqual((await pGot.nth(2))[0], { name: 'Heidi', n: 2 });

  // pusher-js whispers
  assert.equal(pch.trigger('client-typing', { name: 'Ivan', n: 3 }), true, 'pusher-js trigger accepted locally');
  assert.deepEqual((await aGot.nth(2))[0], { name: 'Ivan', n: 3 }, '2.x client got the pusher-js whisper');
  assert.deepEqual((await bGot.nth(2))[0], { name: 'Ivan', n: 3 }, '4.x client got the pusher-js whisper');

  // not echoed to the sender: A's only whispers are from B and P (A's own came before B's in A's stream)
  assert.deepEqual(aGot.calls.map((c) => c[0].n), [2, 3], 'A never gets its own whisper');
  assert.deepEqual(bGot.calls.map((c) => c[0].n), [1, 3], 'B never gets its own whisper');
  // P's own whisper: send one more from A as a barrier for P's stream
  aCh.whisper('typing', { name: 'Grace', n: 4 });
  await pGot.nth(3);
  assert.deepEqual(pGot.calls.map((c) => c[0].n), [1, 2, 4], 'pusher-js never gets its own whisper');
});

test('presence channel whisper between socket.io 4.x, 2.x and pusher-js', async () => {
  const name = uid('room');
  const channel = `presence-${name}`;
  const A = await SioClient.connect(server, { version: 4, cookie: 'laravel_session=7' });
  const B = await SioClient.connect(server, { version: 2, cookie: 'laravel_session=8' });
  const aHere = capture('A here');
  const bHere = capture('B here');
  const aCh = A.echo.join(name).here(aHere.cb);
  const bCh = B.echo.join(name).here(bHere.cb);
  await aHere.nth(1);
  await bHere.nth(1);
  const bGot = capture('B whisper');
  bCh.listenForWhisper('typing', bGot.cb);
  const p = await connectedPusher(server, { user: 9 });
  const pch = await pusherSubscribe(p, channel);
  const pGot = capture('P whisper');
  pch.bind('client-typing', pGot.cb);
  await waitSubscriptions(server, channel, 3);
  aCh.whisper('typing', { who: userInfo(7).name });
  assert.deepEqual((await bGot.nth(1))[0], { who: 'Grace' });
  assert.deepEqual((await pGot.nth(1))[0], { who: 'Grace' });
  assert.equal(A.count('client-typing'), 0);
});

test('whispers on a public channel, or on a channel the sender has not joined, are not delivered', async () => {
  const pub = uid('public');
  const name = uid('chat');
  const channel = `private-${name}`;
  const A = await SioClient.connect(server, { version: 2, cookie: 'laravel_session=7' });
  const B = await SioClient.connect(server, { version: 4, cookie: 'laravel_session=8' });
  A.echo.channel(pub);
  B.echo.channel(pub);
  B.echo.private(name);
  const aCh = A.echo.private(name);
  await waitSubscriptions(server, pub, 2);
  await waitSubscriptions(server, channel, 2);

  // public channel whisper: raw "client event" as Echo would send it
  A.socket.emit('client event', { channel: pub, event: 'client-typing', data: { bad: 'public' } });
  // not subscribed: A whispers on a private channel it never joined
  const other = `private-${uid('other')}`;
  B.echo.private(other.slice('private-'.length));
  await waitSubscriptions(server, other, 1);
  A.socket.emit('client event', { channel: other, event: 'client-typing', data: { bad: 'not-subscribed' } });
  // event name without client- prefix
  A.socket.emit('client event', { channel, event: 'typing', data: { bad: 'no-prefix' } });
  // Sentinel: a valid whisper from the same socket. The server handles one socket's messages in
  // order (engineioxide's on_message, handled inline), so it is relayed after the ones above.
  aCh.whisper('typing', { ok: true });
  await B.nextEvent('client-typing', channel);
  const bad = B.all((a) => a[2] && a[2].bad);
  assert.deepEqual(bad, [], 'no invalid whisper was delivered');
  assert.equal(B.count('typing'), 0);
  assert.equal(A.isConnected, true);
  assert.equal(B.isConnected, true);
});

test('a client event on a private channel the sender never joined is dropped (socket.io and pusher-js)', async () => {
  const name = uid('secret');
  const channel = `private-${name}`;
  const A = await SioClient.connect(server, { version: 4, cookie: 'laravel_session=7' });
  const B = await SioClient.connect(server, { version: 4, cookie: 'laravel_session=8' });
  const aCh = A.echo.private(name);
  const aGot = capture('A listenForWhisper');
  aCh.listenForWhisper('typing', aGot.cb);
  B.echo.private(name);
  await waitSubscriptions(server, channel, 2);
  // Intruders: a socket.io client and a pusher-js client, neither subscribed. Each then
  // subscribes to a public channel on the same connection: once that succeeds, the server
  // has handled (and refused) the client event sent before it.
  const X = await SioClient.connect(server, { version: 4 });
  X.socket.emit('client event', { channel, event: 'client-typing', data: { n: 'intruder' } });
  const xPub = uid('xpub');
  X.echo.channel(xPub);
  await waitSubscriptions(server, xPub, 1);
  const p = await connectedPusher(server, { user: 9 });
  p.send_event('client-typing', { n: 'intruder' }, channel);
  await pusherSubscribe(p, uid('ppub'));
  // Sentinel through the whisper path from the authorised B.
  B.echo.private(name).whisper('typing', { n: 'sentinel' });
  assert.deepEqual((await aGot.nth(1))[0], { n: 'sentinel' });
  assert.deepEqual(aGot.calls.map((c) => c[0].n), ['sentinel'], 'no intruder whisper delivered');
});
