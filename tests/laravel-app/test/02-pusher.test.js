// A real Laravel 8.83 app with laravel-echo's pusher / reverb connector (pusher-js). The app
// broadcasts with the redis broadcaster, which signs nothing: private and presence channels
// are authorised by Resonance asking the app's /broadcasting/auth (its `auth_endpoint`) with
// the cookie of the WebSocket handshake, and the channel callbacks decide.
import assert from 'node:assert/strict';
import { useStack, Browser, PusherEcho, USERS, capture, order, waitSubscriptions } from '../lib/harness.js';

const h = useStack();
let server;
let laravel;
const stackTest = (name, fn) =>
  h.test(name, async () => {
    ({ server, laravel } = h);
    return fn();
  });

for (const broadcaster of ['reverb', 'pusher']) {
  for (const auth of ['server', 'browser']) {
    const t = (name, fn) => stackTest(`Echo ${broadcaster} connector, ${auth === 'server' ? 'unsigned subscribe' : "the page's own /broadcasting/auth call"}: ${name}`, fn);

    t('private channel allowed by the callback; the event arrives; toOthers() leaves out the sender', async () => {
      const a = await new Browser(laravel, 'alice').login(USERS.alice);
      const tab1 = await PusherEcho.connect(server, a, { broadcaster, auth });
      const tab2 = await PusherEcho.connect(server, a, { broadcaster, auth });
      const got1 = capture('tab 1 OrderShipped');
      const got2 = capture('tab 2 OrderShipped');
      tab1.echo.private('orders.1').listen('OrderShipped', got1.cb);
      tab2.echo.private('orders.1').listen('OrderShipped', got2.cb);
      await tab1.subscribed('private-orders.1');
      await tab2.subscribed('private-orders.1');
      if (auth === 'browser') {
        assert.deepEqual(tab1.authCalls.map((c) => [c.status, c.body]), [[200, true]], "Laravel's redis broadcaster answers `true`, no signature");
      }
      await a.ok('/orders/5/ship', {}, { socketId: tab1.id });
      assert.deepEqual((await got2.nth(1))[0], order(1, 5, tab1.id));
      await a.ok('/orders/6/ship-to-all');
      assert.deepEqual((await got1.nth(1))[0], order(1, 6), 'tab 1 skipped the toOthers() event');
      assert.deepEqual((await got2.nth(2))[0], order(1, 6));
    });

    t("another user's private channel is refused (403)", async () => {
      const b = await new Browser(laravel, 'bob').login(USERS.bob);
      const c = await PusherEcho.connect(server, b, { broadcaster, auth });
      const err = await c.refused('private-orders.1');
      if (auth === 'server') assert.equal(err.status, 403, `status of ${err.message}`);
      else assert.match(err.message, /403/, 'the page\'s own auth call was refused');
      assert.equal(c.pusher.connection.state, 'connected');
    });

    t('presence members come from the channel callback (never from the client); the staff room refuses non-admins', async () => {
      const room = `pusher-${broadcaster}-${auth}`;
      const a = await new Browser(laravel, 'alice').login(USERS.alice);
      const c = await new Browser(laravel, 'carol').login(USERS.carol);
      const ca = await PusherEcho.connect(server, a, { broadcaster, auth });
      // with unsigned subscribes Carol's client claims to be Alice (an admin): the app decides
      const cc = await PusherEcho.connect(server, c, { broadcaster, auth, claim: { user_id: 1, user_info: { id: 1, name: 'Alice' } } });
      const here = capture('here (Carol)');
      const joining = capture('joining (Carol sees Alice)');
      cc.echo.join(`chat.${room}`).here(here.cb).joining(joining.cb);
      assert.deepEqual((await here.nth(1))[0], [{ id: 3, name: 'Carol' }], 'the member is who the session says');
      ca.echo.join(`chat.${room}`);
      assert.deepEqual((await joining.nth(1))[0], { id: 1, name: 'Alice' });
      const err = await cc.refused('presence-chat.staff');
      if (auth === 'server') assert.equal(err.status, 403);
      else assert.match(err.message, /403/);
      await ca.subscribed('presence-chat.staff');
      await waitSubscriptions(server, 'presence-chat.staff', 1);
      if (auth === 'browser') {
        assert.deepEqual(ca.authCalls.map((x) => [x.channelName, x.status, x.body]), [
          [`presence-chat.${room}`, 200, { channel_data: { user_id: 1, user_info: { id: 1, name: 'Alice' } } }],
          ['presence-chat.staff', 200, { channel_data: { user_id: 1, user_info: { id: 1, name: 'Alice' } } }],
        ], "Laravel's redis broadcaster answers channel_data as an object, unsigned");
      }
    });

    t('broadcast notifications and a guest refused', async () => {
      const a = await new Browser(laravel, 'alice').login(USERS.alice);
      const d = await new Browser(laravel, 'dave').login(USERS.dave);
      const ca = await PusherEcho.connect(server, a, { broadcaster, auth });
      const got = capture('notification');
      ca.echo.private('App.Models.User.1').notification(got.cb);
      await ca.subscribed('private-App.Models.User.1');
      await d.ok('/users/1/invoice', { amount: 12 });
      const [n] = await got.nth(1);
      assert.equal(n.type, 'App\\Notifications\\InvoicePaid');
      assert.deepEqual([n.amount, n.for], [12, 'Alice']);

      const guest = await new Browser(laravel, 'guest').visit();
      const cg = await PusherEcho.connect(server, guest, { broadcaster, auth });
      await cg.refused('private-App.Models.User.1');
    });
  }
}

stackTest('a WebSocket without any cookie is refused private channels (no session: guest)', async () => {
  const c = await PusherEcho.connect(server, null, { broadcaster: 'reverb', auth: 'server' });
  const err = await c.refused('private-orders.1');
  assert.equal(err.status, 403);
});
