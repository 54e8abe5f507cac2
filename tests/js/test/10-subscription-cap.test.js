// 10. per-connection subscription cap (RESONANCE_APP_MAX_SUBSCRIPTIONS): pusher-js gets
//     pusher:subscription_error with status 429 for the channel over the cap; the connection
//     stays open and its other channels keep working.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { useHarness, connectedPusher, subscribe, waitForEvent, trigger, uid } from '../lib/harness.js';

const h = useHarness();
let server;
before(async () => {
  server = await h.startServer({ env: { RESONANCE_APP_MAX_SUBSCRIPTIONS: '2' } });
});

test('a pusher-js subscription over the cap gets subscription_error 429', async () => {
  const [a, b, c] = [uid('cap-a'), uid('cap-b'), uid('cap-c')];
  const p = await connectedPusher(server);
  const cha = await subscribe(p, a);
  await subscribe(p, b);
  const over = p.subscribe(c);
  const [error] = await waitForEvent(over, 'pusher:subscription_error');
  assert.equal(error.status, 429, JSON.stringify(error));
  assert.equal(error.type, 'LimitReached');
  assert.match(error.error, /at most 2 channels per connection/);
  // still connected: the channels it has keep receiving
  assert.equal(p.connection.state, 'connected');
  const got = waitForEvent(cha, 'still-here');
  await trigger(server, a, 'still-here', { ok: true });
  assert.deepEqual((await got)[0], { ok: true });
});
