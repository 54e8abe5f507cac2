// 13. pusher-js's HTTP fallback transports across two nodes behind a round-robin proxy that sends
//     each request to the other node (no sticky sessions): the node that does not hold a session
//     forwards its requests to the one that does, through Redis.
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import {
  useCluster, Pusher, track, connectedPusher, pusherSubscribe, ChannelRecorder, trigger, channelInfo,
  signChannel, signUser, userInfo, waitUntil, uid, DEFAULT_WAIT_MS,
} from '../lib/harness.js';

const h = useCluster();
let A, B, proxy;

/** A proxy that sends request i to upstreams[i % n]: every request goes to the other node. */
function roundRobinProxy(upstreams) {
  const counts = upstreams.map(() => 0);
  let next = 0;
  const server = http.createServer((req, res) => {
    const i = next++ % upstreams.length;
    counts[i]++;
    const up = upstreams[i];
    const out = http.request({ host: up.host, port: up.port, path: req.url, method: req.method, headers: req.headers }, (r) => {
      res.writeHead(r.statusCode, r.headers);
      r.pipe(res);
    });
    out.on('error', () => res.destroy());
    res.on('close', () => out.destroy());
    req.pipe(out);
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve({ server, counts, port: server.address().port })));
}

before(async () => {
  // A short activity timeout: a vanished fallback client's session expires within it.
  [A, B] = await h.startCluster(2, { env: { RESONANCE_APP_ACTIVITY_TIMEOUT: '3' } });
  proxy = await roundRobinProxy([A, B]);
});
after(() => proxy.server.close());

function fallbackClient(transport, user) {
  const app = A.app;
  const p = new Pusher(app.key, {
    httpHost: '127.0.0.1',
    httpPort: proxy.port,
    httpPath: '/pusher',
    forceTLS: false,
    enabledTransports: [transport],
    disableStats: true,
    cluster: 'mt1',
    channelAuthorization: {
      customHandler: ({ socketId, channelName }, cb) => {
        if (!channelName.startsWith('presence-')) return cb(null, { auth: signChannel(app, socketId, channelName) });
        const channelData = JSON.stringify({ user_id: user, user_info: userInfo(user) });
        cb(null, { auth: signChannel(app, socketId, channelName, channelData), channel_data: channelData });
      },
    },
    userAuthentication: {
      customHandler: ({ socketId }, cb) => {
        const userData = JSON.stringify({ id: String(user), user_info: userInfo(user) });
        cb(null, { auth: signUser(app, socketId, userData), user_data: userData });
      },
    },
  });
  p.label = `${transport}(user ${user}) via proxy`;
  return track(p);
}

for (const transport of ['xhr_streaming', 'xhr_polling']) {
  describe(`${transport} through a round-robin proxy`, () => {
    test('connect, channels, presence, whispers, sign-in, unsubscribe, vanishing', async () => {
      const before = [...proxy.counts];
      const fb = fallbackClient(transport, 5);
      await waitUntil(() => fb.connection.state === 'connected', DEFAULT_WAIT_MS, () => `${fb.label} connected (${fb.connection.state})`);
      assert.equal(fb.connection.connection.transport.name, transport);

      // public channel: events from the API of either node
      const pub = uid('pub');
      const pubRec = new ChannelRecorder(await pusherSubscribe(fb, pub), pub, 'fb public');
      await trigger(A, pub, 'news', { from: 'A' });
      await trigger(B, pub, 'news', { from: 'B' });
      await waitUntil(() => pubRec.received('news').length === 2, DEFAULT_WAIT_MS, () => `two events (${pubRec.summary()})`);

      // presence with WebSocket clients on both nodes; whispers both ways
      const channel = `presence-${uid('room')}`;
      const wsA = await connectedPusher(A, { user: 1 });
      const wsB = await connectedPusher(B, { user: 2 });
      const recA = new ChannelRecorder(await pusherSubscribe(wsA, channel), channel, 'wsA');
      const recB = new ChannelRecorder(await pusherSubscribe(wsB, channel), channel, 'wsB');
      const fbCh = await pusherSubscribe(fb, channel);
      const fbRec = new ChannelRecorder(fbCh, channel, 'fb');
      await waitUntil(() => fbCh.members.count === 3, DEFAULT_WAIT_MS, () => `3 members (${fbCh.members.count})`);
      await waitUntil(() => recA.received('pusher:member_added').some((m) => String(m.id) === '5'), DEFAULT_WAIT_MS, 'wsA sees user 5 join');
      fbCh.trigger('client-typing', { from: 'fb' });
      await waitUntil(() => recB.received('client-typing').length === 1, DEFAULT_WAIT_MS, () => `whisper at wsB (${recB.summary()})`);
      wsA.channel(channel).trigger('client-typing', { from: 'wsA' });
      await waitUntil(() => fbRec.received('client-typing').length === 1, DEFAULT_WAIT_MS, () => `whisper at fb (${fbRec.summary()})`);
      assert.deepEqual(fbRec.received('client-typing')[0], { from: 'wsA' });

      // sign-in and send-to-user from either node
      fb.signin();
      await waitUntil(() => fb.user.serverToUserChannel && fb.user.serverToUserChannel.subscribed, DEFAULT_WAIT_MS, 'signed in');
      const userRec = new ChannelRecorder(fb.user, '#server-to-user-5', 'fb user');
      await trigger(B, '#server-to-user-5', 'notice', { n: 1 });
      await waitUntil(() => userRec.received('notice').length === 1, DEFAULT_WAIT_MS, () => `notice (${userRec.summary()})`);

      // unsubscribe: the public channel is vacated cluster-wide
      fb.unsubscribe(pub);
      await waitUntil(async () => (await channelInfo(B, pub)).occupied === false, DEFAULT_WAIT_MS, 'public channel vacated');

      // both nodes served this session's requests
      const served = proxy.counts.map((c, i) => c - before[i]);
      assert.ok(served.every((c) => c > 0), `requests per node: ${served}`);

      // the client vanishes: its member leaves within the activity timeout
      const gone = Date.now();
      fb.disconnect();
      await waitUntil(() => recB.received('pusher:member_removed').some((m) => String(m.id) === '5'), 12000, () => `wsB sees user 5 leave (${recB.summary()})`);
      assert.ok(Date.now() - gone < 10000, `left after ${Date.now() - gone} ms`);
    });
  });
}
