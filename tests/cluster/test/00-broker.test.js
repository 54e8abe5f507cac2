// 0. The harness's broker for CLUSTER_ENGINE (no resonance node): it starts, a SIGKILL takes it
//    down (its ports refuse connections), and start() brings it back on the same ports with its
//    state: a redis cluster with the same node ids and all 16384 slots (its nodes conf files),
//    NATS with JetStream enabled on the same store dir. The Laravel ingestion Redis answers PUBLISH.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { useCluster, ENGINE } from '../lib/harness.js';

const h = useCluster();
let broker;

/** Whether something accepts a TCP connection on 127.0.0.1:port. */
function listening(port) {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

/** The ports a node connects to. */
function ports(b) {
  if (ENGINE === 'redis-cluster') return b.servers.map((s) => s.port);
  if (ENGINE === 'nats') return [b.port];
  return [b.server.port];
}

/** What must survive a kill/restart. */
async function state(b) {
  if (ENGINE === 'redis-cluster') {
    const out = [];
    for (const s of b.servers) {
      const info = await s.cli('CLUSTER', 'INFO');
      out.push({ id: (await s.cli('CLUSTER', 'MYID')).trim(), state: /cluster_state:(\w+)/.exec(info)[1], slots: Number(/cluster_slots_ok:(\d+)/.exec(info)[1]) });
    }
    return out;
  }
  if (ENGINE === 'nats') {
    const jsz = await (await fetch(`http://127.0.0.1:${b.monitorPort}/jsz`)).json();
    return { store_dir: jsz.config?.store_dir, disabled: Boolean(jsz.disabled) };
  }
  return (await b.server.cli('PING')).trim();
}

before(async () => {
  broker = await h.broker();
});

test(`the ${ENGINE} broker is up and gives the nodes their adapter variables`, async () => {
  const env = broker.nodeEnv();
  assert.equal(env.RESONANCE_ADAPTER, ENGINE);
  assert.match(env.RESONANCE_REDIS_URL, /^redis:\/\/127\.0\.0\.1:\d+/, 'a Redis URL (the adapter or the Laravel ingestion)');
  if (ENGINE === 'nats') assert.match(env.RESONANCE_NATS_URL, /^nats:\/\/127\.0\.0\.1:\d+$/);
  if (ENGINE === 'redis-cluster') assert.equal(env.RESONANCE_REDIS_URL.split(',').length, 3, env.RESONANCE_REDIS_URL);
  for (const p of ports(broker)) assert.ok(await listening(p), `port ${p} accepts connections`);
  const s = await state(broker);
  if (ENGINE === 'redis-cluster') for (const n of s) assert.deepEqual([n.state, n.slots], ['ok', 16384], JSON.stringify(s));
  if (ENGINE === 'nats') assert.equal(s.disabled, false, `JetStream enabled: ${JSON.stringify(s)}`);
  assert.equal(typeof (await (await h.redis()).publish('laravel_database_probe', '{}')), 'number', 'the Laravel Redis answers PUBLISH');
});

test(`SIGKILL of the ${ENGINE} broker, then a restart on the same ports with the same state`, async () => {
  const before = { ports: ports(broker), env: broker.nodeEnv(), state: await state(broker) };
  await broker.kill();
  assert.equal(broker.running, false);
  for (const p of before.ports) assert.equal(await listening(p), false, `port ${p} refuses connections after the kill`);
  const t0 = Date.now();
  await broker.start();
  console.log(`${ENGINE} broker back in ${Date.now() - t0} ms`);
  assert.deepEqual(ports(broker), before.ports);
  assert.deepEqual(broker.nodeEnv(), before.env);
  assert.deepEqual(await state(broker), before.state);
  for (const p of before.ports) assert.ok(await listening(p), `port ${p} accepts connections again`);
});
