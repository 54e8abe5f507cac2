// 1. Laravel's RedisBroadcaster → Resonance → Echo (socket.io-client 2.x and 4.x), Echo's
//    pusher connector, pusher-js and a raw Pusher client — for each Redis prefix form.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  useHarness, SioClient, RawClient, connectedPusher, pusherSubscribe, echoPusher, capture,
  waitSubscriptions, waitIngestion, waitUntil, laravelPayload, uid, LARAVEL_EVENT, DEFAULT_WAIT_MS,
} from '../lib/harness.js';

const h = useHarness();

for (const prefix of ['laravel_database_', 'laravel-database-', '']) {
  describe(`Redis prefix ${JSON.stringify(prefix)}`, () => {
    let redis, server;
    before(async () => {
      redis = await h.redis();
      server = await h.startServer({ redis, prefix });
      await waitIngestion(redis, prefix);
    });
    after(async () => {
      await server.stop();
    });

    /** Every kind of client on one public channel; resolves once the server counts them all. */
    async function allClients(channel) {
      const sio2ws = await SioClient.connect(server, { version: 2 });
      const sio2poll = await SioClient.connect(server, { version: 2, transports: ['polling'] });
      const sio2default = await SioClient.connect(server, { version: 2, transports: null }); // polling → websocket upgrade
      const sio4ws = await SioClient.connect(server, { version: 4 });
      const sio4poll = await SioClient.connect(server, { version: 4, transports: ['polling'] });
      const sios = [sio2ws, sio2poll, sio2default, sio4ws, sio4poll];
      const labels = ['sio2 websocket', 'sio2 polling', 'sio2 polling+upgrade', 'sio4 websocket', 'sio4 polling'];
      const sioNamespaced = sios.map((c, i) => capture(`${labels[i]} listen('OrderShipped')`));
      const sioDotted = sios.map((c, i) => capture(`${labels[i]} listen('.App\\\\Events\\\\OrderShipped')`));
      sios.forEach((c, i) => {
        c.echo.channel(channel).listen('OrderShipped', sioNamespaced[i].cb).listen(`.${LARAVEL_EVENT}`, sioDotted[i].cb);
      });

      const echoP = echoPusher(server);
      const echoPCap = capture("Echo pusher listen('OrderShipped')");
      echoP.channel(channel).listen('OrderShipped', echoPCap.cb);

      const pjs = await connectedPusher(server);
      const pjsCh = await pusherSubscribe(pjs, channel);
      const pjsCap = capture('pusher-js bind(App\\Events\\OrderShipped)');
      pjsCh.bind(LARAVEL_EVENT, pjsCap.cb);

      const raw = await RawClient.connect(server);
      const sub = await raw.subscribe(channel);
      assert.equal(sub.event, 'pusher_internal:subscription_succeeded');

      await waitSubscriptions(server, channel, sios.length + 3);
      return { sios, labels, sioNamespaced, sioDotted, echoP, echoPCap, pjs, pjsCap, raw };
    }

    test('one PUBLISH reaches socket.io 2.x and 4.x (websocket and polling), Echo pusher, pusher-js and raw Pusher clients', async () => {
      const channel = uid('orders');
      const c = await allClients(channel);
      const receivers = await redis.publish(`${prefix}${channel}`, laravelPayload(LARAVEL_EVENT, { id: 5 }, null));
      assert.equal(receivers, 1, 'exactly one Redis subscriber (the server) receives the PUBLISH');

      for (let i = 0; i < c.sios.length; i++) {
        const [data] = await c.sioNamespaced[i].nth(1);
        assert.deepEqual(data, { id: 5 }, `${c.labels[i]}: Echo listen('OrderShipped') data`);
        const [data2] = await c.sioDotted[i].nth(1);
        assert.deepEqual(data2, { id: 5 }, `${c.labels[i]}: Echo listen('.App\\Events\\OrderShipped') data`);
        const frame = await c.sios[i].nextEvent(LARAVEL_EVENT, channel);
        assert.deepEqual(frame, [LARAVEL_EVENT, channel, { id: 5 }], `${c.labels[i]}: wire frame 42["<event>","<channel>",<data>]`);
      }
      const [epData] = await c.echoPCap.nth(1);
      assert.deepEqual(epData, { id: 5 }, 'Echo (pusher connector) data');
      const [pjsData] = await c.pjsCap.nth(1);
      assert.deepEqual(pjsData, { id: 5 }, 'pusher-js data is the object {id:5}');
      const rawMsg = await c.raw.nextEvent(LARAVEL_EVENT, channel);
      assert.equal(typeof rawMsg.data, 'string', 'Pusher protocol: data is a JSON-encoded string');
      assert.deepEqual(JSON.parse(rawMsg.data), { id: 5 });

      // exactly once everywhere (a second, later publish is the barrier)
      await redis.publish(`${prefix}${channel}`, laravelPayload('App\\Events\\Barrier', { n: 1 }));
      for (const s of c.sios) await s.nextEvent('App\\Events\\Barrier', channel);
      await c.raw.nextEvent('App\\Events\\Barrier', channel);
      for (let i = 0; i < c.sios.length; i++) {
        assert.equal(c.sios[i].count(LARAVEL_EVENT, channel), 1, `${c.labels[i]} got the event exactly once`);
        assert.equal(c.sioNamespaced[i].calls.length, 1, `${c.labels[i]} Echo callback called once`);
        assert.equal(c.sios[i].isConnected, true);
      }
      assert.equal(c.raw.all((m) => m.event === LARAVEL_EVENT).length, 1, 'raw Pusher client got it once');
      assert.equal(c.pjsCap.calls.length, 1, 'pusher-js got it once');
    });

    test('EVAL multi-channel publish (Laravel, several channels) reaches both channels once', async () => {
      const ch1 = uid('orders');
      const ch2 = uid('invoices');
      const a = await SioClient.connect(server, { version: 2 });
      const b = await SioClient.connect(server, { version: 4 });
      const both = await SioClient.connect(server, { version: 4 });
      a.echo.channel(ch1);
      b.echo.channel(ch2);
      both.echo.channel(ch1);
      both.echo.channel(ch2);
      const p = await connectedPusher(server);
      const pc1 = await pusherSubscribe(p, ch1);
      const pc2 = await pusherSubscribe(p, ch2);
      const pcap1 = capture('pusher-js ch1');
      const pcap2 = capture('pusher-js ch2');
      pc1.bind(LARAVEL_EVENT, pcap1.cb);
      pc2.bind(LARAVEL_EVENT, pcap2.cb);
      await waitSubscriptions(server, ch1, 3);
      await waitSubscriptions(server, ch2, 3);

      await redis.evalPublish(laravelPayload(LARAVEL_EVENT, { id: 6 }), [`${prefix}${ch1}`, `${prefix}${ch2}`]);
      assert.deepEqual(await a.nextEvent(LARAVEL_EVENT, ch1), [LARAVEL_EVENT, ch1, { id: 6 }]);
      assert.deepEqual(await b.nextEvent(LARAVEL_EVENT, ch2), [LARAVEL_EVENT, ch2, { id: 6 }]);
      assert.deepEqual(await both.nextEvent(LARAVEL_EVENT, ch1), [LARAVEL_EVENT, ch1, { id: 6 }]);
      assert.deepEqual(await both.nextEvent(LARAVEL_EVENT, ch2), [LARAVEL_EVENT, ch2, { id: 6 }]);
      assert.deepEqual((await pcap1.nth(1))[0], { id: 6 });
      assert.deepEqual((await pcap2.nth(1))[0], { id: 6 });
      // barrier, then counts
      await redis.publish(`${prefix}${ch1}`, laravelPayload('Barrier', {}));
      await a.nextEvent('Barrier', ch1);
      await both.nextEvent('Barrier', ch1);
      assert.equal(a.count(LARAVEL_EVENT), 1, 'a (ch1 only) got exactly one event');
      assert.equal(both.count(LARAVEL_EVENT), 2, 'both-channel client got one per channel');
      assert.equal(b.count(LARAVEL_EVENT, ch1), 0, 'b is not on ch1');
    });

    if (prefix !== '') {
      test('a publish without the prefix (or with another prefix form) reaches nobody', async () => {
        const channel = uid('orders');
        const s2 = await SioClient.connect(server, { version: 2 });
        const s4 = await SioClient.connect(server, { version: 4 });
        s2.echo.channel(channel);
        s4.echo.channel(channel);
        const raw = await RawClient.connect(server);
        await raw.subscribe(channel);
        await waitSubscriptions(server, channel, 3);
        const other = prefix === 'laravel_database_' ? 'laravel-database-' : 'laravel_database_';
        const r1 = await redis.publish(channel, laravelPayload('App\\Events\\Unprefixed', { id: 1 }));
        const r2 = await redis.publish(`${other}${channel}`, laravelPayload('App\\Events\\OtherPrefix', { id: 2 }));
        assert.equal(r1, 0, `PUBLISH ${channel} (no prefix) must match no subscription of the server`);
        assert.equal(r2, 0, `PUBLISH ${other}${channel} must match no subscription of the server`);
        await redis.publish(`${prefix}${channel}`, laravelPayload('App\\Events\\Marker', { id: 3 }));
        await s2.nextEvent('App\\Events\\Marker', channel);
        await s4.nextEvent('App\\Events\\Marker', channel);
        await raw.nextEvent('App\\Events\\Marker', channel);
        for (const s of [s2, s4]) {
          assert.deepEqual(s.all((a) => a[0] !== 'App\\Events\\Marker'), [], `socket.io ${s.version}.x got only the marker`);
        }
        assert.equal(raw.all((m) => m.channel === channel && m.event !== 'App\\Events\\Marker' && !m.event.startsWith('pusher')).length, 0);
      });
    }

    test('"socket": <sid> excludes that Socket.IO client (2.x and 4.x) and "socket": <pusher id> that pusher-js client', async () => {
      const channel = uid('orders');
      const s2a = await SioClient.connect(server, { version: 2 });
      const s2b = await SioClient.connect(server, { version: 2 });
      const s4a = await SioClient.connect(server, { version: 4 });
      const s4b = await SioClient.connect(server, { version: 4 });
      const sios = { s2a, s2b, s4a, s4b };
      for (const s of Object.values(sios)) s.echo.channel(channel);
      const pa = await connectedPusher(server);
      const pb = await connectedPusher(server);
      const pca = await pusherSubscribe(pa, channel);
      const pcb = await pusherSubscribe(pb, channel);
      const capA = capture('pusher-js A');
      const capB = capture('pusher-js B');
      pca.bind_global((ev, data) => !ev.startsWith('pusher') && capA.cb(ev, data));
      pcb.bind_global((ev, data) => !ev.startsWith('pusher') && capB.cb(ev, data));
      await waitSubscriptions(server, channel, 6);

      const senders = [
        ['s2a', s2a.id],
        ['s4a', s4a.id],
        ['pusher A', pa.connection.socket_id],
      ];
      for (const [name, sid] of senders) assert.ok(sid, `${name} has a socket id`);
      for (const [name, sid] of senders) {
        await redis.publish(`${prefix}${channel}`, laravelPayload(`App\\Events\\ToOthers`, { from: name }, sid));
      }
      // an unknown socket id excludes nobody
      await redis.publish(`${prefix}${channel}`, laravelPayload('App\\Events\\ToOthers', { from: 'unknown' }, '999.999'));
      await redis.publish(`${prefix}${channel}`, laravelPayload('App\\Events\\Marker', {}));
      const fromOf = (s) => s.all((a) => a[0] === 'App\\Events\\ToOthers').map((a) => a[2].from);
      for (const s of Object.values(sios)) await s.nextEvent('App\\Events\\Marker', channel);
      await capA.nth(4);
      await capB.nth(5);
      assert.deepEqual(fromOf(s2a), ['s4a', 'pusher A', 'unknown'], `socket.io 2.x client ${s2a.id} is excluded from its own "socket"`);
      assert.deepEqual(fromOf(s4a), ['s2a', 'pusher A', 'unknown'], `socket.io 4.x client ${s4a.id} is excluded from its own "socket"`);
      assert.deepEqual(fromOf(s2b), ['s2a', 's4a', 'pusher A', 'unknown'], 'other 2.x client gets all');
      assert.deepEqual(fromOf(s4b), ['s2a', 's4a', 'pusher A', 'unknown'], 'other 4.x client gets all');
      const pFrom = (cap) => cap.calls.filter(([ev]) => ev === 'App\\Events\\ToOthers').map(([, d]) => d.from);
      assert.deepEqual(pFrom(capA), ['s2a', 's4a', 'unknown'], 'pusher-js A is excluded from its own socket id');
      assert.deepEqual(pFrom(capB), ['s2a', 's4a', 'pusher A', 'unknown'], 'pusher-js B gets all');
    });

    test('string data and private-/presence- channel names are routed as published', async () => {
      const channel = uid('news');
      const s2 = await SioClient.connect(server, { version: 2 });
      s2.echo.channel(channel);
      const p = await connectedPusher(server);
      const pc = await pusherSubscribe(p, channel);
      const cap = capture('pusher-js string data');
      pc.bind('App\\Events\\Text', cap.cb);
      await waitSubscriptions(server, channel, 2);
      await redis.publish(`${prefix}${channel}`, laravelPayload('App\\Events\\Text', 'hello'));
      assert.deepEqual(await s2.nextEvent('App\\Events\\Text', channel), ['App\\Events\\Text', channel, 'hello']);
      assert.deepEqual((await cap.nth(1))[0], 'hello');

      // a pusher-js client on a private channel (signed locally) gets Redis events published to private-<name>
      const priv = `private-${uid('orders')}`;
      const pp = await pusherSubscribe(p, priv);
      const pcap = capture('pusher-js private');
      pp.bind(LARAVEL_EVENT, pcap.cb);
      await waitSubscriptions(server, priv, 1);
      await redis.publish(`${prefix}${priv}`, laravelPayload(LARAVEL_EVENT, { id: 8 }));
      assert.deepEqual((await pcap.nth(1))[0], { id: 8 });
    });

    test('subscribe → unsubscribe (Echo.leaveChannel) stops delivery; no frame is sent on subscribe', async () => {
      const channel = uid('orders');
      const s2 = await SioClient.connect(server, { version: 2 });
      const s4 = await SioClient.connect(server, { version: 4 });
      s2.echo.channel(channel);
      s4.echo.channel(channel);
      await waitSubscriptions(server, channel, 2);
      // Sentinel on the same channel: a frame answering the subscribe would be queued before it.
      await redis.publish(`${prefix}${channel}`, laravelPayload('Sentinel', { n: 1 }));
      await s2.nextEvent('Sentinel', channel);
      await s4.nextEvent('Sentinel', channel);
      const sentinel = [['Sentinel', channel, { n: 1 }]];
      assert.deepEqual(s2.all(), sentinel, 'no frame on a successful public subscribe (2.x)');
      assert.deepEqual(s4.all(), sentinel, 'no frame on a successful public subscribe (4.x)');
      s2.echo.leaveChannel(channel);
      await waitSubscriptions(server, channel, 1);
      await redis.publish(`${prefix}${channel}`, laravelPayload(LARAVEL_EVENT, { id: 9 }));
      await s4.nextEvent(LARAVEL_EVENT, channel);
      // s2 is still connected; a marker on another channel proves its stream is live
      const other = uid('other');
      s2.echo.channel(other);
      await waitSubscriptions(server, other, 1);
      await redis.publish(`${prefix}${other}`, laravelPayload('Marker', {}));
      await s2.nextEvent('Marker', other);
      assert.equal(s2.count(LARAVEL_EVENT), 0, 'unsubscribed 2.x client got nothing on the left channel');
    });
  });
}

test('server log mentions no panic', async () => {
  await waitUntil(() => true, DEFAULT_WAIT_MS, 'noop');
  for (const s of h.servers) {
    assert.ok(!/panicked at/.test(s.lines.join('\n')), `server on port ${s.port} panicked:\n${s.logTail(20)}`);
  }
});
