// 9. per-connection subscription cap (RESONANCE_APP_MAX_SUBSCRIPTIONS) over Socket.IO:
//    the subscription over the cap gets 42["subscription_error","<channel>",429] and the
//    socket stays usable.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { useHarness, SioClient, waitSubscriptions, pusherTrigger, uid } from '../lib/harness.js';

const h = useHarness();
let server;

before(async () => {
  server = await h.startServer({ env: { RESONANCE_APP_MAX_SUBSCRIPTIONS: '2' } });
});

for (const version of [2, 4]) {
  test(`socket.io ${version}.x: a subscription over the cap gets subscription_error 429`, async () => {
    const [a, b, c] = [uid('cap-a'), uid('cap-b'), uid('cap-c')];
    const sio = await SioClient.connect(server, { version });
    const errors = [];
    sio.socket.on('subscription_error', (channel, status) => errors.push([channel, status]));
    sio.echo.channel(a);
    sio.echo.channel(b);
    sio.echo.channel(c);
    const frame = await sio.nextEvent('subscription_error');
    assert.deepEqual(frame, ['subscription_error', c, 429]);
    assert.deepEqual(errors, [[c, 429]]);
    // still usable: the channels within the cap receive events
    await waitSubscriptions(server, a, 1);
    await pusherTrigger(server, a, 'still-here', { ok: true });
    const got = await sio.nextEvent('still-here', a);
    assert.deepEqual(got[2], { ok: true });
    assert.ok(sio.isConnected);
  });
}
