// 14. Watchlist and sign-in errors: pusher-js 8's pusher.user.watchlist fires `online` for the
// watched users online at sign-in, then `online` / `offline` as they come and go on any node
// (offline after the 3 s hold); a failed pusher:signin answers pusher:signin_error and the
// connection stays usable.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { pusherConnectOptions } from '../../common/harness-core.js';
import { DEFAULT_WAIT_MS, Pusher, RawClient, signUser, sleep, track, useCluster, waitUntil } from '../lib/harness.js';

const cluster = useCluster();

/** pusher-js signed in as `user`, watching `watchlist`; records watchlist events. */
function watcher(node, user, watchlist) {
  const app = node.app;
  const p = track(new Pusher(app.key, {
    ...pusherConnectOptions(node),
    userAuthentication: {
      customHandler: ({ socketId }, cb) => {
        const userData = JSON.stringify({ id: String(user), watchlist });
        cb(null, { auth: signUser(app, socketId, userData), user_data: userData });
      },
    },
  }));
  p.label = `pusher-js@${node.label}(user ${user})`;
  p.seen = [];
  p.user.watchlist.bind('online', (e) => p.seen.push({ name: 'online', ids: [...e.user_ids].sort() }));
  p.user.watchlist.bind('offline', (e) => p.seen.push({ name: 'offline', ids: [...e.user_ids].sort() }));
  p.signin();
  return p;
}

const saw = (p, name, id) => p.seen.some((e) => e.name === name && e.ids.includes(id));

test('pusher-js watchlist: online at sign-in, then online/offline across nodes', async () => {
  const [A, B, C] = await cluster.startCluster(3);
  const two = await RawClient.connect(B);
  await two.signin('2');
  // Another connection of user 4 on A only as a presence member: online too.
  const four = await RawClient.connect(C);
  await four.subscribePresence('presence-watch-lobby', 4);

  const w = watcher(A, '1', ['2', '3', '4']);
  await waitUntil(() => saw(w, 'online', '2') && saw(w, 'online', '4'), DEFAULT_WAIT_MS, () => `initial online [2,4] (seen ${JSON.stringify(w.seen)})`);
  assert.ok(!saw(w, 'online', '3'), 'user 3 is not online');

  const three = await RawClient.connect(C);
  await three.signin('3');
  await waitUntil(() => saw(w, 'online', '3'), DEFAULT_WAIT_MS, () => `online 3 (seen ${JSON.stringify(w.seen)})`);

  // A second tab of user 2 closes: still online.
  const twoAgain = await RawClient.connect(C);
  await twoAgain.signin('2');
  twoAgain.close();
  const left = Date.now();
  two.close();
  await waitUntil(() => saw(w, 'offline', '2'), 8000, () => `offline 2 (seen ${JSON.stringify(w.seen)})`);
  assert.ok(Date.now() - left >= 2900, 'offline is held like member_removed');
  assert.equal(w.seen.filter((e) => e.ids.includes('2')).length, 2, `online then offline for user 2, once each: ${JSON.stringify(w.seen)}`);

  // A reload of user 3 (gone and back within the hold) is not reported.
  three.close();
  await sleep(300);
  const threeBack = await RawClient.connect(A);
  await threeBack.signin('3');
  four.close();
  await waitUntil(() => saw(w, 'offline', '4'), 8000, () => `offline 4 (seen ${JSON.stringify(w.seen)})`);
  assert.ok(!saw(w, 'offline', '3'), `a reload reported user 3 offline: ${JSON.stringify(w.seen)}`);
  w.disconnect();
  for (const n of [A, B, C]) await n.stop();
});

test('a failed sign-in answers pusher:signin_error and keeps the connection open', async () => {
  const [A] = await cluster.startCluster(1, { labels: ['S'] });
  const c = await RawClient.connect(A);
  const userData = JSON.stringify({ id: '5' });
  c.send({ event: 'pusher:signin', data: { auth: `${A.app.key}:${'0'.repeat(64)}`, user_data: userData } });
  const bad = await c.nextEvent('pusher:signin_error');
  assert.equal(bad.parsed.status, 401);
  assert.match(bad.parsed.error, /signature/i);
  // Validly signed but without an id.
  const noId = JSON.stringify({ name: 'x' });
  c.send({ event: 'pusher:signin', data: { auth: signUser(A.app, c.socketId, noId), user_data: noId } });
  const malformed = await c.nextEvent('pusher:signin_error');
  assert.equal(malformed.parsed.status, 400);
  assert.match(malformed.parsed.error, /"id"/);
  // Still open and usable: subscribe, then sign in properly.
  await c.subscribeChannel('after-signin-error');
  await c.signin('5');
  assert.equal(c.all((m) => m.event === 'pusher:error').length, 0);
  c.close();
  await A.stop();
});
