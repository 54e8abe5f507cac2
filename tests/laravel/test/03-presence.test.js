// 3. Presence over Socket.IO (Echo .join: here/joining/leaving) with server-side auth,
//    two tabs of one user, and pusher-js members on the same channel.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import {
  useHarness, SioClient, RawClient, connectedPusher, pusherSubscribe, capture, waitSubscriptions,
  pusherApi, pusherTrigger, userInfo, uid,
} from '../lib/harness.js';

const h = useHarness();
let server, auth;

before(async () => {
  const redis = await h.redis();
  auth = await h.startAuth();
  server = await h.startServer({ redis, auth });
});

const byId = (a, b) => a.id - b.id;

/** A Socket.IO "tab" of `user` joined to presence-<name>, with its callbacks recorded. */
function tab(sio, name) {
  const here = capture(`${sio.version}.x here`);
  const joining = capture(`${sio.version}.x joining`);
  const leaving = capture(`${sio.version}.x leaving`);
  const ch = sio.echo.join(name).here(here.cb).joining(joining.cb).leaving(leaving.cb);
  return { sio, ch, here, joining, leaving };
}

for (const version of [2, 4]) {
  test(`socket.io ${version}.x: here() is deduped, joining() only for a new user, leaving() only when the last tab leaves`, async () => {
    const name = uid('room');
    const channel = `presence-${name}`;
    const A = tab(await SioClient.connect(server, { version, cookie: 'laravel_session=7' }), name);
    const [hereA] = await A.here.nth(1);
    assert.deepEqual(hereA, [userInfo(7)], 'A here(): only Grace');
    const subFrame = A.sio.all((a) => a[0] === 'presence:subscribed')[0];
    assert.equal(subFrame[1], channel);
    assert.deepEqual(subFrame[2].map((m) => ({ user_id: m.user_id, user_info: m.user_info })), [{ user_id: 7, user_info: userInfo(7) }], 'wire: presence:subscribed [{user_id,user_info}]');
    const authReq = auth.forChannel(channel)[0];
    assert.ok(authReq, 'presence auth went to the endpoint');
    assert.equal(authReq.headers.cookie, 'laravel_session=7');

    // second tab of the same user
    const B = tab(await SioClient.connect(server, { version, cookie: 'laravel_session=7' }), name);
    const [hereB] = await B.here.nth(1);
    assert.deepEqual(hereB, [userInfo(7)], 'B here(): Grace once, although she has two connections');

    // another user
    const C = tab(await SioClient.connect(server, { version: version === 2 ? 4 : 2, cookie: 'laravel_session=8' }), name);
    const [hereC] = await C.here.nth(1);
    assert.deepEqual([...hereC].sort(byId), [userInfo(7), userInfo(8)], 'C here(): Grace and Heidi, deduped');
    assert.deepEqual((await A.joining.nth(1))[0], userInfo(8), 'A sees Heidi joining');
    assert.deepEqual((await B.joining.nth(1))[0], userInfo(8), 'B sees Heidi joining');
    assert.equal(A.joining.calls.length, 1, "A: joining fired once (not for Grace's second tab)");
    assert.equal(A.sio.count('presence:joining', channel), 1);
    assert.equal(C.joining.calls.length, 0, 'the joiner gets no joining for itself');
    await waitSubscriptions(server, channel, 3);

    // Grace closes one tab: nobody sees her leave
    B.sio.disconnect();
    await waitSubscriptions(server, channel, 2);
    // Grace leaves with her last tab (Echo.leave → unsubscribe)
    A.sio.echo.leave(name);
    const [left] = await C.leaving.nth(1);
    assert.deepEqual(left, userInfo(7), 'C sees Grace leaving');
    const leaveFrame = C.sio.all((a) => a[0] === 'presence:leaving')[0];
    assert.equal(leaveFrame[1], channel);
    assert.equal(leaveFrame[2].user_id, 7, 'wire: presence:leaving {user_id, user_info}');
    await waitSubscriptions(server, channel, 1);
    // Sentinel on the same channel: both leaves were handled before the count dropped to 1, so any
    // extra presence:leaving they caused is queued on C's socket before this event.
    await pusherTrigger(server, channel, 'sentinel', { n: 1 });
    await C.sio.nextEvent('sentinel', channel);
    assert.equal(C.leaving.calls.length, 1, 'leaving fired exactly once (only for the last tab)');
    assert.equal(C.sio.count('presence:leaving', channel), 1);
    assert.equal(A.sio.isConnected, true, 'A is still connected after leaving the channel');
  });

  test(`socket.io ${version}.x and pusher-js share presence members`, async () => {
    const name = uid('room');
    const channel = `presence-${name}`;
    const C = tab(await SioClient.connect(server, { version, cookie: 'laravel_session=8' }), name);
    await C.here.nth(1);

    // pusher-js member (signed locally like Laravel's pusher broadcaster) joins
    const p = await connectedPusher(server, { user: 9 });
    const added = capture('pusher-js member_added');
    const removed = capture('pusher-js member_removed');
    const pch = p.subscribe(channel);
    pch.bind('pusher:member_added', added.cb);
    pch.bind('pusher:member_removed', removed.cb);
    await pusherSubscribe(p, channel);
    const ids = [];
    pch.members.each((m) => ids.push(String(m.id)));
    assert.deepEqual(ids.sort(), ['8', '9'], 'pusher-js sees the Socket.IO member and itself');
    assert.deepEqual(pch.members.get('8')?.info ?? pch.members.get(8)?.info, userInfo(8), 'Socket.IO member info as pusher-js sees it');
    assert.deepEqual((await C.joining.nth(1))[0], userInfo(9), 'Socket.IO sees the pusher-js member joining');

    // a new Socket.IO user joins: pusher-js gets member_added, here() lists everybody
    const D = tab(await SioClient.connect(server, { version, authHeaders: { Cookie: 'laravel_session=10' } }), name);
    const [hereD] = await D.here.nth(1);
    assert.deepEqual([...hereD].sort(byId), [userInfo(8), userInfo(9), userInfo(10)], 'here() includes the pusher-js member');
    const [m] = await added.nth(1);
    assert.equal(String(m.id), '10');
    assert.deepEqual(m.info, userInfo(10));

    // the Socket.IO user disconnects: pusher-js member_removed, C leaving
    D.sio.disconnect();
    const [r] = await removed.nth(1);
    assert.equal(String(r.id), '10');
    assert.deepEqual((await C.leaving.nth(1))[0], userInfo(10));

    // the pusher-js member leaves: Socket.IO leaving
    p.unsubscribe(channel);
    assert.deepEqual((await C.leaving.nth(2))[0], userInfo(9));
    await waitSubscriptions(server, channel, 1);
    assert.equal(added.calls.length, 1);
    assert.equal(removed.calls.length, 1);
  });
}

test('presence channel_data as a JSON string (Laravel variant) is understood', async () => {
  const name = `strdata-${uid('room')}`;
  const A = tab(await SioClient.connect(server, { version: 4, cookie: 'laravel_session=11' }), name);
  const [here] = await A.here.nth(1);
  assert.deepEqual(here, [userInfo(11)]);
});

test('presence without a user → subscription_error 403', async () => {
  const name = uid('room');
  const sio = await SioClient.connect(server, { version: 2 });
  sio.echo.join(name);
  assert.deepEqual(await sio.nextEvent('subscription_error'), ['subscription_error', `presence-${name}`, 403]);
  assert.equal(sio.isConnected, true);
});

test('Pusher presence subscribe without a signature is authorised server-side; members and the Pusher API see both protocols', async () => {
  const name = uid('room');
  const channel = `presence-${name}`;
  const A = tab(await SioClient.connect(server, { version: 4, cookie: 'laravel_session=7' }), name);
  await A.here.nth(1);
  const raw = await RawClient.connect(server, { headers: { Cookie: 'laravel_session=8' } });
  const reply = await raw.subscribe(channel);
  assert.equal(reply.event, 'pusher_internal:subscription_succeeded', JSON.stringify(reply));
  const presence = reply.parsed.presence;
  assert.deepEqual([...presence.ids].map(String).sort(), ['7', '8'], `presence ids (${JSON.stringify(presence)})`);
  assert.deepEqual(presence.hash['7'], userInfo(7));
  assert.deepEqual(presence.hash['8'], userInfo(8));
  assert.deepEqual((await A.joining.nth(1))[0], userInfo(8), 'Socket.IO sees the Pusher member joining');
  const req = auth.forChannel(channel).find((r) => r.form.socket_id === raw.socketId);
  assert.ok(req, 'the server asked the auth endpoint for the Pusher socket');
  assert.equal(req.headers.cookie, 'laravel_session=8');

  const users = await pusherApi(server, 'GET', `/channels/${channel}/users`);
  assert.equal(users.status, 200, users.text);
  assert.deepEqual(users.json.users.map((u) => String(u.id)).sort(), ['7', '8'], `Pusher API users (${users.text})`);
  const info = await pusherApi(server, 'GET', `/channels/${channel}`, { query: { info: 'user_count,subscription_count' } });
  assert.equal(info.json.user_count, 2);
  assert.equal(info.json.subscription_count, 2);

  // the Socket.IO member leaves: the Pusher client gets member_removed
  A.sio.disconnect();
  const removed = await raw.nextEvent('pusher_internal:member_removed', channel);
  assert.equal(String(removed.parsed.user_id), '7');
});
