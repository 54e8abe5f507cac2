// A real Laravel 8.83 app with laravel-echo's socket.io connector (socket.io-client 2.x and
// 4.x): the session cookie of a real login authorises channels through the app's own
// /broadcasting/auth and routes/channels.php; events, notifications and toOthers() come
// from the app's redis broadcaster.
import assert from 'node:assert/strict';
import {
  useStack, Browser, SioEcho, USERS, capture, order, waitSubscriptions, subscriptionCount,
} from '../lib/harness.js';

const h = useStack();
let server;
let laravel;
/** A test on the file's stack (Redis, Laravel, resonance), started by the first test. */
const stackTest = (name, fn) =>
  h.test(name, async () => {
    ({ server, laravel } = h);
    return fn();
  });
const alice = () => new Browser(laravel, 'alice').login(USERS.alice);
const bob = () => new Browser(laravel, 'bob').login(USERS.bob);

const ORDER_EVENT = 'App\\Events\\OrderShipped';

for (const version of [2, 4]) {
  const t = (name, fn) => stackTest(`socket.io ${version}.x: ${name}`, fn);

  t('a logged-in user gets their private channel (channel callback true) and the event the app broadcasts', async () => {
    const a = await alice();
    const sio = await SioEcho.connect(server, a, { version });
    const got = capture('OrderShipped on private-orders.1');
    sio.echo.private('orders.1').listen('OrderShipped', got.cb);
    await waitSubscriptions(server, 'private-orders.1', 1);
    await a.ok('/orders/42/ship-to-all');
    assert.deepEqual((await got.nth(1))[0], order(1, 42), 'the event\'s public properties, as the redis broadcaster sends them');
    assert.deepEqual(sio.frames.filter((f) => f[0] === ORDER_EVENT), [[ORDER_EVENT, 'private-orders.1', order(1, 42)]]);
  });

  t("another user's private channel is refused by the channel callback (403) and delivers nothing", async () => {
    const b = await bob();
    const sio = await SioEcho.connect(server, b, { version });
    const stolen = capture('OrderShipped on private-orders.1 (must not fire)');
    sio.echo.private('orders.1').listen('OrderShipped', stolen.cb);
    assert.deepEqual(await sio.subscriptionError('private-orders.1'), ['subscription_error', 'private-orders.1', 403]);
    // Bob's own channel works on the same socket; Alice's event, broadcast first, must not reach him.
    const own = capture('OrderShipped on private-orders.2');
    sio.echo.private('orders.2').listen('OrderShipped', own.cb);
    await waitSubscriptions(server, 'private-orders.2', 1);
    const a = await alice();
    await a.ok('/orders/1/ship-to-all');
    await b.ok('/orders/2/ship-to-all'); // sentinel, same Redis path, after Alice's event
    assert.deepEqual((await own.nth(1))[0], order(2, 2));
    assert.equal(stolen.calls.length, 0, "Alice's order never reached Bob");
    assert.equal(sio.socket.connected, true);
  });

  t('a guest (session without a login) is refused private and presence channels (403)', async () => {
    const guest = await new Browser(laravel, 'guest').visit();
    const sio = await SioEcho.connect(server, guest, { version });
    sio.echo.private('orders.1');
    assert.deepEqual(await sio.subscriptionError('private-orders.1'), ['subscription_error', 'private-orders.1', 403]);
    sio.echo.join('chat.lobby');
    assert.deepEqual(await sio.subscriptionError('presence-chat.lobby'), ['subscription_error', 'presence-chat.lobby', 403]);
    assert.equal(await subscriptionCount(server, 'private-orders.1'), 0);
  });

  t('a forged session cookie is refused (Laravel cannot decrypt it: a guest)', async () => {
    const a = await alice();
    const forged = new Browser(laravel, 'forged');
    for (const [k, v] of a.cookies) forged.cookies.set(k, k === 'laravel_session' ? `${v.slice(0, -6)}AAAAAA` : v);
    forged.csrf = a.csrf;
    const sio = await SioEcho.connect(server, forged, { version });
    sio.echo.private('orders.1');
    assert.deepEqual(await sio.subscriptionError('private-orders.1'), ['subscription_error', 'private-orders.1', 403]);
  });

  t('presence: here / joining / leaving carry the user_info the channel callback returns', async () => {
    const room = `lobby${version}`;
    const channel = `presence-chat.${room}`;
    const a = await alice();
    const b = await bob();
    const sa = await SioEcho.connect(server, a, { version });
    const here = capture('here (Alice)');
    const joining = capture('joining (Alice sees Bob)');
    const leaving = capture('leaving (Alice sees Bob go)');
    sa.echo.join(`chat.${room}`).here(here.cb).joining(joining.cb).leaving(leaving.cb);
    assert.deepEqual((await here.nth(1))[0], [{ id: 1, name: 'Alice' }]);
    const sb = await SioEcho.connect(server, b, { version });
    const hereB = capture('here (Bob)');
    sb.echo.join(`chat.${room}`).here(hereB.cb);
    const members = (await hereB.nth(1))[0].sort((x, y) => x.id - y.id);
    assert.deepEqual(members, [{ id: 1, name: 'Alice' }, { id: 2, name: 'Bob' }]);
    assert.deepEqual((await joining.nth(1))[0], { id: 2, name: 'Bob' });
    await waitSubscriptions(server, channel, 2);
    sb.echo.disconnect();
    assert.deepEqual((await leaving.nth(1))[0], { id: 2, name: 'Bob' });
  });

  t('presence: the "staff" room admits the admin and refuses everyone else (callback false → 403)', async () => {
    const b = await bob();
    const sb = await SioEcho.connect(server, b, { version });
    sb.echo.join('chat.staff');
    assert.deepEqual(await sb.subscriptionError('presence-chat.staff'), ['subscription_error', 'presence-chat.staff', 403]);
    const a = await alice();
    const sa = await SioEcho.connect(server, a, { version });
    const here = capture('here (Alice in staff)');
    sa.echo.join('chat.staff').here(here.cb);
    assert.deepEqual((await here.nth(1))[0], [{ id: 1, name: 'Alice' }]);
  });

  t('toOthers(): the tab whose X-Socket-ID made the request does not get the event, the other tab does', async () => {
    const a = await alice();
    const tab1 = await SioEcho.connect(server, a, { version });
    const tab2 = await SioEcho.connect(server, a, { version });
    const got1 = capture('tab 1');
    const got2 = capture('tab 2');
    tab1.echo.private('orders.1').listen('OrderShipped', got1.cb);
    tab2.echo.private('orders.1').listen('OrderShipped', got2.cb);
    await waitSubscriptions(server, 'private-orders.1', 2);
    const r = await a.ok('/orders/7/ship', {}, { socketId: tab1.id });
    assert.equal(r.json.socket, tab1.id, 'Laravel saw the X-Socket-ID header');
    assert.deepEqual((await got2.nth(1))[0], order(1, 7, tab1.id));
    await a.ok('/orders/8/ship-to-all'); // sentinel to both tabs, after the toOthers() event
    assert.deepEqual((await got1.nth(1))[0], order(1, 8), 'tab 1 got the sentinel first: the toOthers() event was left out');
    assert.deepEqual((await got2.nth(2))[0], order(1, 8));
    assert.equal(got1.calls.length, 1);
  });

  t('broadcast notifications reach .notification() on private-App.Models.User.{id}', async () => {
    const a = await alice();
    const b = await bob();
    const sio = await SioEcho.connect(server, a, { version });
    const got = capture('notification');
    sio.echo.private('App.Models.User.1').notification(got.cb);
    await waitSubscriptions(server, 'private-App.Models.User.1', 1);
    await b.ok('/users/1/invoice', { amount: 99 });
    const [n] = await got.nth(1);
    assert.equal(n.type, 'App\\Notifications\\InvoicePaid');
    assert.equal(n.amount, 99);
    assert.equal(n.for, 'Alice');
    assert.match(n.id, /^[0-9a-f-]{36}$/, 'the notification id (a UUID)');
  });

  t('public event with broadcastAs/broadcastWith; a POST without the CSRF token is refused (419) and broadcasts nothing', async () => {
    const guest = await new Browser(laravel, 'guest').visit();
    const sio = await SioEcho.connect(server, guest, { version });
    const got = capture('news.published');
    sio.echo.channel('news').listen('.news.published', got.cb);
    await waitSubscriptions(server, 'news', 1);
    const refused = await guest.post('/news', { headline: 'forged' }, { csrf: false });
    assert.equal(refused.status, 419, 'CSRF token mismatch');
    await guest.ok('/news', { headline: `hello ${version}` });
    assert.deepEqual((await got.nth(1))[0], { headline: `hello ${version}`, length: 7, socket: null }, 'the first event is the valid one');
    assert.equal(got.calls.length, 1);
  });
}

stackTest('after logout the same cookie no longer authorises a private channel', async () => {
  const a = await alice();
  const before = await SioEcho.connect(server, a, { version: 4 });
  before.echo.private('orders.1');
  await waitSubscriptions(server, 'private-orders.1', 1);
  await a.ok('/logout');
  const after = await SioEcho.connect(server, a, { version: 4 });
  after.echo.private('orders.1');
  assert.deepEqual(await after.subscriptionError('private-orders.1'), ['subscription_error', 'private-orders.1', 403]);
});
