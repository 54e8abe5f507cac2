// 15. Webhook retries: a receiver that is down for 20 s (connection refused), then back, gets
// every event queued meanwhile, in order per channel, and the node counts failures and retries
// in /metrics. Bounded: ~35 s (retries back off 1, 2, 4, 8, 10 s).

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { RawClient, sleep, uid, useCluster } from '../lib/harness.js';
import { WebhookReceiver, webhookEnv } from '../lib/webhooks.js';

const cluster = useCluster();
let receiver;
before(async () => {
  receiver = await WebhookReceiver.start({ id: '616161', key: 'cluster-test-key', secret: 'cluster-test-secret' });
});
after(() => receiver?.stop());

function metric(text, name) {
  const line = text.split('\n').find((l) => l.startsWith(`${name}{`));
  return line ? Number(line.split(' ').pop()) : NaN;
}

test('a target down for 20 s loses nothing: retried with back-off, delivered once it is back', async () => {
  const [A, B] = await cluster.startCluster(2, { env: webhookEnv(receiver), labels: ['R1', 'R2'] });
  const first = `wh-down-${uid()}`;
  const c = await RawClient.connect(A);
  await c.subscribeChannel(first);
  await receiver.waitFor({ name: 'channel_occupied', channel: first });

  await receiver.kill();
  const downAt = Date.now();
  const chans = [1, 2, 3].map((i) => `wh-down-${i}-${uid()}`);
  const d = await RawClient.connect(B);
  for (const ch of chans) await d.subscribeChannel(ch);
  c.close(); // `first` is vacated while the target is down
  await sleep(20000 - (Date.now() - downAt));
  const m = await (await fetch(`${A.httpUrl}/metrics`)).text() + (await (await fetch(`${B.httpUrl}/metrics`)).text());
  assert.ok(/resonance_webhook_requests_failed_total\{app_id="616161"\} [1-9]/.test(m), `failures counted:\n${m.split('\n').filter((l) => l.includes('webhook')).join('\n')}`);
  assert.ok(/resonance_webhook_queue_depth\{app_id="616161"\} [1-9]/.test(m), 'queued events are visible');
  await receiver.restart();
  for (const ch of chans) await receiver.waitFor({ name: 'channel_occupied', channel: ch }, 15000);
  await receiver.waitFor({ name: 'channel_vacated', channel: first }, 15000);
  const events = await receiver.events();
  const order = events.filter((e) => chans.includes(e.channel)).map((e) => e.channel);
  assert.deepEqual(order, chans, 'one occupied each, in the order they happened');
  const after = await (await fetch(`${B.httpUrl}/metrics`)).text();
  assert.ok(metric(after, 'resonance_webhook_requests_retried_total') >= 1, 'retries counted');
  assert.equal(metric(after, 'resonance_webhook_events_dropped_total'), 0, 'nothing dropped');
  d.close();
  for (const n of [A, B]) await n.stop();
});
