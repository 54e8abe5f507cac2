// 7. laravel-echo 2.x with the "pusher" and "reverb" broadcasters.
import { test, before, describe } from 'node:test';
import assert from 'node:assert/strict';
import Echo from 'laravel-echo';
import {
  useHarness, Pusher, trigger, track, waitUntil, withTimeout, uid, DEFAULT_WAIT_MS,
} from '../lib/harness.js';

const h = useHarness();
let server, auth;
before(async () => {
  server = await h.startServer();
  auth = await h.startAuth(server.app);
});

function makeEcho(broadcaster, user) {
  const opts = {
    broadcaster,
    key: server.app.key,
    wsHost: server.host,
    wsPort: server.port,
    forceTLS: false,
    enabledTransports: ['ws'],
    disableStats: true,
    authEndpoint: auth.channelEndpoint,
    auth: { headers: user ? { 'X-Test-User': String(user) } : {} },
    Pusher,
  };
  if (broadcaster === 'pusher') opts.cluster = 'mt1';
  return track(new Echo(opts));
}

async function connectedEcho(broadcaster, user) {
  const echo = makeEcho(broadcaster, user);
  await waitUntil(() => echo.connectionStatus() === 'connected', DEFAULT_WAIT_MS, `Echo (${broadcaster}) connected`);
  return echo;
}

/** Resolves when Echo's channel reports subscribed; rejects on its error callback. */
function subscribed(channel, label) {
  return withTimeout(
    new Promise((resolve, reject) => {
      channel.subscribed(() => resolve());
      channel.error((e) => reject(new Error(`${label}: ${JSON.stringify(e)}`)));
    }),
    DEFAULT_WAIT_MS,
    `${label} subscribed`,
  );
}

/** A value-capturing callback: `cb` to pass, `next()` to await the next call. */
function capture(label) {
  const calls = [];
  let wake = () => {};
  const cb = (...args) => {
    calls.push(args);
    wake();
  };
  const nth = (n) =>
    withTimeout(
      new Promise((resolve) => {
        const check = () => calls.length >= n && resolve(calls[n - 1]);
        wake = check;
        check();
      }),
      DEFAULT_WAIT_MS,
      `${label} (call #${n}; calls so far: ${JSON.stringify(calls)})`,
    );
  return { cb, calls, nth };
}

for (const broadcaster of ['pusher', 'reverb']) {
  describe(`laravel-echo broadcaster "${broadcaster}"`, () => {
    test('Echo.channel().listen(".Event") and namespaced listen("Event")', async () => {
      const name = uid(`orders-${broadcaster}`);
      const echo = await connectedEcho(broadcaster);
      const dotted = capture('.OrderShipped');
      const namespaced = capture('OrderShipped');
      const ch = echo.channel(name).listen('.OrderShipped', dotted.cb).listen('OrderShipped', namespaced.cb);
      await subscribed(ch, name);
      await trigger(server, name, 'OrderShipped', { id: 1 });
      await trigger(server, name, 'App\\Events\\OrderShipped', { id: 2 });
      assert.deepEqual((await dotted.nth(1))[0], { id: 1 });
      assert.deepEqual((await namespaced.nth(1))[0], { id: 2 });
      assert.match(echo.socketId(), /^\d+\.\d+$/);
    });

    test('Echo.private().listen() authorizes through /broadcasting/auth', async () => {
      const name = uid(`user-${broadcaster}`);
      const echo = await connectedEcho(broadcaster, '1');
      const got = capture('private .Updated');
      const ch = echo.private(name).listen('.Updated', got.cb);
      await subscribed(ch, `private-${name}`);
      const req = auth.requests.find((r) => r.form.channel_name === `private-${name}`);
      assert.ok(req, 'auth endpoint was called');
      assert.equal(req.headers['x-test-user'], '1', 'Echo auth headers were sent');
      await trigger(server, `private-${name}`, 'Updated', { ok: true });
      assert.deepEqual((await got.nth(1))[0], { ok: true });
    });

    test('Echo.private() on a refused channel calls .error()', async () => {
      const echo = await connectedEcho(broadcaster, '1');
      const err = await withTimeout(
        new Promise((resolve) => echo.private(`forbidden-${uid()}`).error(resolve)),
        DEFAULT_WAIT_MS,
        'Echo .error() callback',
      );
      assert.equal(err.status, 403);
    });

    test('Echo.join(): here / joining / leaving', async () => {
      const name = uid(`room-${broadcaster}`);
      const alice = await connectedEcho(broadcaster, '1');
      const here1 = capture('alice here');
      const joining = capture('joining');
      const leaving = capture('leaving');
      alice.join(name).here(here1.cb).joining(joining.cb).leaving(leaving.cb);
      const [aliceHere] = await here1.nth(1);
      assert.deepEqual(aliceHere, [{ name: 'Alice' }]);

      const bob = await connectedEcho(broadcaster, '2');
      const here2 = capture('bob here');
      bob.join(name).here(here2.cb);
      const [bobHere] = await here2.nth(1);
      assert.deepEqual(bobHere.map((u) => u.name).sort(), ['Alice', 'Bob']);
      assert.deepEqual((await joining.nth(1))[0], { name: 'Bob' });

      bob.leave(name);
      assert.deepEqual((await leaving.nth(1))[0], { name: 'Bob' });
      assert.equal(joining.calls.length, 1);
    });

    test('whisper() / listenForWhisper() on private and presence channels', async () => {
      for (const kind of ['private', 'join']) {
        const name = uid(`typing-${kind}-${broadcaster}`);
        const alice = await connectedEcho(broadcaster, '1');
        const bob = await connectedEcho(broadcaster, '2');
        const gotBob = capture(`bob whisper (${kind})`);
        const gotAlice = capture(`alice whisper (${kind})`);
        const cha = alice[kind](name).listenForWhisper('typing', gotAlice.cb);
        const chb = bob[kind](name).listenForWhisper('typing', gotBob.cb);
        const full = kind === 'join' ? `presence-${name}` : `private-${name}`;
        await Promise.all([subscribed(cha, full), subscribed(chb, full)]);
        cha.whisper('typing', { name: 'Alice' });
        assert.deepEqual((await gotBob.nth(1))[0], { name: 'Alice' });
        // sentinel from bob to alice: alice must have nothing before it
        chb.whisper('typing', { name: 'Bob' });
        assert.deepEqual((await gotAlice.nth(1))[0], { name: 'Bob' }, `${kind}: Alice got her own whisper back`);
        assert.equal(gotBob.calls.length, 1, `${kind}: Bob got his own whisper back or a duplicate`);
      }
    });

    test('Echo.socketId() as socket_id excludes the sender (toOthers)', async () => {
      const name = uid(`others-${broadcaster}`);
      const a = await connectedEcho(broadcaster);
      const b = await connectedEcho(broadcaster);
      const ga = capture('a');
      const gb = capture('b');
      const [cha, chb] = [a.channel(name).listen('.Ev', ga.cb), b.channel(name).listen('.Ev', gb.cb)];
      await Promise.all([subscribed(cha, name), subscribed(chb, name)]);
      await trigger(server, name, 'Ev', { n: 1 }, { socket_id: a.socketId() });
      assert.deepEqual((await gb.nth(1))[0], { n: 1 });
      await trigger(server, name, 'Ev', { n: 2 });
      assert.deepEqual((await ga.nth(1))[0], { n: 2 }, 'the excluded socket received the first event');
      assert.deepEqual((await gb.nth(2))[0], { n: 2 });
    });
  });
}
