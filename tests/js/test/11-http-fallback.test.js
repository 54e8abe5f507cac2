// 11. pusher-js's HTTP fallback transports (xhr_streaming, xhr_polling) with real pusher-js and
//     laravel-echo in Node: a fallback session is an ordinary Pusher connection.
import { test, before, describe } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import Echo from 'laravel-echo';
import nacl from 'tweetnacl';
import {
  useHarness, Pusher, connectedPusher, subscribe, trigger, api, track, waitUntil, waitForState,
  Recorder, uid, signChannel, DEFAULT_WAIT_MS, withTimeout,
} from '../lib/harness.js';

const h = useHarness();
let server, auth;
before(async () => {
  // A short activity timeout: a vanished fallback client's session expires within it.
  server = await h.startServer({ config: { apps: [{ activity_timeout: 3 }] } });
  auth = await h.startAuth(server.app);
});

/** pusher-js options that allow only `transport` (an HTTP fallback) against `srv`. */
export function fallbackOptions(srv, transport) {
  return {
    httpHost: srv.host,
    httpPort: srv.port,
    httpPath: '/pusher',
    wsHost: '127.0.0.1',
    wsPort: 9, // never used: only the fallback transport is enabled
    forceTLS: false,
    enabledTransports: [transport],
    disableStats: true,
    cluster: 'mt1',
  };
}

const transportOf = (p) => p.connection.connection && p.connection.connection.transport.name;

for (const transport of ['xhr_streaming', 'xhr_polling']) {
  describe(`pusher-js over ${transport}`, () => {
    const fallback = (opts = {}) => connectedPusher(server, auth, { ...fallbackOptions(server, transport), ...opts });

    test('connects over the fallback transport; API events on a public channel; unsubscribe', async () => {
      const p = await fallback();
      assert.equal(transportOf(p), transport);
      assert.match(p.connection.socket_id, /^\d+\.\d+$/);
      const channel = uid('public');
      const ch = await subscribe(p, channel);
      const rec = new Recorder(ch, ['news']);
      await trigger(server, channel, 'news', { n: 1 });
      await trigger(server, channel, 'news', { n: 2, text: 'line\nbreak "quoted" ünïcode' });
      await rec.until((items) => items.length === 2, DEFAULT_WAIT_MS, 'two events');
      assert.deepEqual(rec.items.map((i) => i.data), [{ n: 1 }, { n: 2, text: 'line\nbreak "quoted" ünïcode' }]);
      const info = await api(server, 'GET', `/channels/${channel}`, { query: { info: 'subscription_count' } });
      assert.equal(info.json.occupied, true);
      p.unsubscribe(channel);
      await waitUntil(async () => {
        const r = await api(server, 'GET', `/channels/${channel}`);
        return r.json.occupied === false;
      }, DEFAULT_WAIT_MS, 'channel vacated after unsubscribe');
    });

    test('private and presence channels with a WebSocket client; whispers both ways', async () => {
      const ws = await connectedPusher(server, auth, { user: '1' });
      const fb = await fallback({ user: '2' });
      const channel = `presence-${uid('room')}`;
      const wsCh = await subscribe(ws, channel);
      const wsRec = new Recorder(wsCh, ['pusher:member_added', 'pusher:member_removed', 'client-typing']);
      const fbCh = await subscribe(fb, channel);
      assert.equal(fbCh.members.count, 2);
      assert.equal(String(fbCh.members.me.id), '2');
      assert.deepEqual(fbCh.members.get('1').info, { name: 'Alice' });
      const added = await wsRec.waitFor('pusher:member_added');
      assert.equal(String(added.data.id), '2');
      const fbRec = new Recorder(fbCh, ['client-typing', 'server']);
      fbCh.trigger('client-typing', { from: 'fallback' });
      const got = await wsRec.waitFor('client-typing');
      assert.deepEqual(got.data, { from: 'fallback' });
      assert.equal(String(got.metadata.user_id), '2');
      wsCh.trigger('client-typing', { from: 'ws' });
      assert.deepEqual((await fbRec.waitFor('client-typing')).data, { from: 'ws' });
      // private channel: auth through the app's endpoint with the fallback's socket id
      const priv = `private-${uid('orders')}`;
      const privCh = await subscribe(fb, priv);
      const privRec = new Recorder(privCh, ['paid']);
      await trigger(server, priv, 'paid', { id: 7 });
      assert.deepEqual((await privRec.waitFor('paid')).data, { id: 7 });
      // a refused private channel is refused over the fallback too
      const refused = fb.subscribe(`private-forbidden-${uid('x')}`);
      await withTimeout(new Promise((resolve) => refused.bind('pusher:subscription_error', resolve)), DEFAULT_WAIT_MS, 'subscription_error');
      // the fallback client leaves: member_removed at the WebSocket client
      fb.unsubscribe(channel);
      const removed = await wsRec.waitFor('pusher:member_removed');
      assert.equal(String(removed.data.id), '2');
    });

    test('encrypted channel: the client decrypts what the API sends', async () => {
      const sharedSecret = crypto.randomBytes(32);
      const p = track(new Pusher(server.app.key, {
        ...fallbackOptions(server, transport),
        channelAuthorization: {
          customHandler: ({ socketId, channelName }, cb) =>
            cb(null, { auth: signChannel(server.app, socketId, channelName), shared_secret: sharedSecret.toString('base64') }),
        },
      }));
      await waitForState(p, 'connected');
      const channel = `private-encrypted-${uid('vault')}`;
      const ch = await subscribe(p, channel);
      const rec = new Recorder(ch, ['secret']);
      const nonce = nacl.randomBytes(24);
      const box = nacl.secretbox(Buffer.from(JSON.stringify({ code: 1234 })), nonce, new Uint8Array(sharedSecret));
      await trigger(server, channel, 'secret', { nonce: Buffer.from(nonce).toString('base64'), ciphertext: Buffer.from(box).toString('base64') });
      assert.deepEqual((await rec.waitFor('secret')).data, { code: 1234 });
    });

    test('sign-in and send-to-user', async () => {
      const p = await fallback({ user: '7' });
      p.signin();
      await waitUntil(() => p.user.serverToUserChannel && p.user.serverToUserChannel.subscribed, DEFAULT_WAIT_MS, 'signed in');
      assert.equal(p.user.user_data.id, '7');
      const rec = new Recorder(p.user, ['notice']);
      await trigger(server, '#server-to-user-7', 'notice', { text: 'hi seven' });
      assert.deepEqual((await rec.waitFor('notice')).data, { text: 'hi seven' });
    });

    test('a vanishing client: its session expires and its presence member leaves', async () => {
      const ws = await connectedPusher(server, auth, { user: '1' });
      const channel = `presence-${uid('vanish')}`;
      const wsRec = new Recorder(await subscribe(ws, channel), ['pusher:member_added', 'pusher:member_removed']);
      const fb = await fallback({ user: '3' });
      await subscribe(fb, channel);
      await wsRec.waitFor('pusher:member_added');
      // disconnect() only aborts the receive request: nothing reaches the server
      const gone = Date.now();
      fb.disconnect();
      const removed = await wsRec.waitFor('pusher:member_removed', 10000);
      assert.equal(String(removed.data.id), '3');
      // the app's activity_timeout is 3 s: gone within it (plus scheduling slack)
      assert.ok(Date.now() - gone < 8000, `member left after ${Date.now() - gone} ms`);
    });
  });

  test(`laravel-echo over ${transport}: private channel and whisper`, async () => {
    const make = (user, transports) => track(new Echo({
      broadcaster: 'pusher',
      key: server.app.key,
      ...fallbackOptions(server, transports[0]),
      wsHost: server.host,
      wsPort: server.port,
      enabledTransports: transports,
      authEndpoint: auth.channelEndpoint,
      auth: { headers: { 'X-Test-User': user } },
      Pusher,
    }));
    const fbEcho = make('2', [transport]);
    const wsEcho = make('1', ['ws']);
    const name = uid('chat');
    const subscribed = (ch) => withTimeout(new Promise((resolve, reject) => {
      ch.subscribed(resolve);
      ch.error((e) => reject(new Error(JSON.stringify(e))));
    }), DEFAULT_WAIT_MS, 'Echo subscribed');
    const fbCh = fbEcho.private(name);
    const wsCh = wsEcho.private(name);
    await Promise.all([subscribed(fbCh), subscribed(wsCh)]);
    assert.equal(fbEcho.connector.pusher.connection.connection.transport.name, transport);
    const events = [];
    fbCh.listen('.OrderShipped', (e) => events.push(e));
    fbCh.listenForWhisper('typing', (e) => events.push({ whisper: e }));
    await trigger(server, `private-${name}`, 'OrderShipped', { id: 5 });
    wsCh.whisper('typing', { name: 'Alice' });
    await waitUntil(() => events.length === 2, DEFAULT_WAIT_MS, 'event and whisper at the fallback Echo');
    assert.deepEqual(events.find((e) => e.id), { id: 5 });
    assert.deepEqual(events.find((e) => e.whisper), { whisper: { name: 'Alice' } });
  });
}
