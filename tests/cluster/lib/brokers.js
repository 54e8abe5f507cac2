// The cluster's broker, one kind per engine (env CLUSTER_ENGINE, default `redis`):
//
// - redis:         one private redis-server (RESONANCE_ADAPTER=redis, RESONANCE_REDIS_URL).
// - redis-cluster: three masters in cluster mode on free loopback ports (own bus ports, nodes conf
//                  files in a temporary dir), joined with `redis-cli --cluster create`
//                  (RESONANCE_ADAPTER=redis-cluster, RESONANCE_REDIS_URL=the three as a seed list).
//                  Laravel's PUBLISH reaches every cluster node, so it is sent to the first.
// - nats:          nats-server with JetStream (`-js -sd <tmp>`, monitoring port for the route
//                  checks) (RESONANCE_ADAPTER=nats, RESONANCE_NATS_URL), plus a plain redis-server
//                  that is ONLY the Laravel ingestion Redis (RESONANCE_REDIS_URL).
//
// Every broker: nodeEnv() (the RESONANCE_* variables a node needs), kill() (SIGKILL by pid: a
// crash of the whole broker), start() (again on the same ports and data: a redis cluster comes
// back with its slots from its nodes conf files, NATS with its JetStream store), stop(),
// `laravel` (a RedisServer to PUBLISH Laravel payloads on), routes(app, channel) (how many nodes
// take a channel's events from the broker) and what a TCP proxy in front of it needs.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { RedisServer, freePort, run, waitUntil, withTimeout } from '../../common/harness-core.js';

export const ENGINES = ['redis', 'redis-cluster', 'nats'];
/** The engine under test (env CLUSTER_ENGINE). */
export const ENGINE = process.env.CLUSTER_ENGINE || 'redis';
if (!ENGINES.includes(ENGINE)) throw new Error(`CLUSTER_ENGINE=${ENGINE}: expected one of ${ENGINES.join(', ')}`);
/** The broker's name in test titles and messages. */
export const BROKER_NAME = { redis: 'Redis', 'redis-cluster': 'Redis Cluster', nats: 'NATS' }[ENGINE];

const NATS_SERVER = process.env.NATS_SERVER || (fs.existsSync('/usr/sbin/nats-server') ? '/usr/sbin/nats-server' : 'nats-server');

/** Print (once per reason) why an engine-specific assertion is skipped for this engine. */
const skipped = new Set();
export function skipNote(reason) {
  if (skipped.has(reason)) return;
  skipped.add(reason);
  console.log(`[CLUSTER_ENGINE=${ENGINE}] skipped: ${reason}`);
}

/** `n` distinct free loopback ports. */
async function freePorts(n) {
  const out = new Set();
  while (out.size < n) out.add(await freePort());
  return [...out];
}

// ---------------------------------------------------------------------------

/** engine `redis`: one redis-server, also the Laravel ingestion Redis. */
class RedisBroker {
  constructor(server) {
    this.engine = 'redis';
    this.name = 'Redis';
    this.server = server;
    this.laravel = server;
    /** PUBLISH's reply counts every receiver (one server). */
    this.laravelReceiversCounted = true;
  }

  toString() {
    return `redis-server on ${this.server.port}`;
  }

  nodeEnv(url = this.server.url) {
    return { RESONANCE_ADAPTER: 'redis', RESONANCE_REDIS_URL: url };
  }

  get running() {
    return this.server.running;
  }

  kill() {
    return this.server.kill();
  }

  async start() {
    await this.server.start();
    return this;
  }

  stop() {
    return this.server.stop();
  }

  /** Subscriptions to the channel's route (`resonance#ch#{app}#{channel}`: PUBSUB NUMSUB). */
  async routes(app, channel) {
    const out = (await this.server.cli('PUBSUB', 'NUMSUB', `resonance#ch#${app}#${channel}`)).trim().split('\n');
    return Number(out[1]);
  }

  /** For a TCP proxy in front of the broker: its port, a node URL through the proxy, and
   * whether a chunk a node sends subscribes to a channel route. */
  get proxy() {
    return {
      port: this.server.port,
      url: (port) => `redis://127.0.0.1:${port}/0`,
      subscribesRoute: (text) => /SUBSCRIBE/i.test(text) && text.includes('#ch#'),
      envVar: 'RESONANCE_REDIS_URL',
    };
  }
}

// ---------------------------------------------------------------------------

/** engine `redis-cluster`: three masters, slots spread by `redis-cli --cluster create`. */
class RedisClusterBroker {
  constructor(spawnFn) {
    this.engine = 'redis-cluster';
    this.name = 'Redis Cluster';
    this.spawnFn = spawnFn;
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'resonance-cluster-rc-'));
    this.servers = [];
    /** PUBLISH answers the receivers connected to the node it was sent to, not the cluster's. */
    this.laravelReceiversCounted = false;
  }

  toString() {
    return `redis cluster on ${this.servers.map((s) => s.port).join(',')}`;
  }

  async create() {
    const ports = await freePorts(6);
    this.servers = [0, 1, 2].map((i) => {
      const port = ports[i];
      const bus = ports[i + 3];
      return new RedisServer(port, {
        tmpPrefix: 'resonance-cluster-rc-node-',
        spawnFn: this.spawnFn,
        args: ['--cluster-enabled', 'yes', '--cluster-config-file', path.join(this.dir, `nodes-${port}.conf`), '--cluster-port', String(bus),
          '--cluster-node-timeout', '3000'],
      });
    });
    this.laravel = this.servers[0];
    await Promise.all(this.servers.map((s) => s.start()));
    await run('redis-cli', ['--cluster', 'create', ...this.servers.map((s) => `127.0.0.1:${s.port}`), '--cluster-replicas', '0', '--cluster-yes'], { timeout: 30000 });
    await this.waitOk();
    return this;
  }

  /** Until CLUSTER INFO says cluster_state:ok on all three. */
  async waitOk(ms = 30000) {
    const last = {};
    await waitUntil(
      async () => {
        for (const s of this.servers) {
          const info = await s.cli('CLUSTER', 'INFO').catch((e) => `error: ${e.message}`);
          last[s.port] = /cluster_state:(\w+)/.exec(info)?.[1] || info.slice(0, 80);
        }
        return this.servers.every((s) => last[s.port] === 'ok');
      },
      ms,
      () => `cluster_state:ok on every redis cluster node (last: ${JSON.stringify(last)})`,
      100,
    );
  }

  /** The seed list: every master. */
  get url() {
    return this.servers.map((s) => `redis://127.0.0.1:${s.port}`).join(',');
  }

  nodeEnv(url = this.url) {
    return { RESONANCE_ADAPTER: 'redis-cluster', RESONANCE_REDIS_URL: url };
  }

  get running() {
    return this.servers.some((s) => s.running);
  }

  async kill() {
    await Promise.all(this.servers.map((s) => s.kill()));
  }

  /** Start the three again on the same ports with the same nodes conf files; until cluster_state:ok. */
  async start() {
    await Promise.all(this.servers.map((s) => (s.running ? null : s.start())));
    await this.waitOk();
    return this;
  }

  async stop() {
    await Promise.all(this.servers.map((s) => s.stop()));
    fs.rmSync(this.dir, { recursive: true, force: true });
  }

  /** Shard-channel subscriptions whose name ends with the channel, over the three masters. */
  async routes(_app, channel) {
    let n = 0;
    for (const s of this.servers) {
      const names = (await s.cli('PUBSUB', 'SHARDCHANNELS', `*${channel}`)).split('\n').map((x) => x.trim()).filter(Boolean);
      for (const name of names) {
        const out = (await s.cli('PUBSUB', 'SHARDNUMSUB', name)).trim().split('\n');
        n += Number(out[1]) || 0;
      }
    }
    return n;
  }

  // No `proxy`: a cluster client connects to the addresses CLUSTER SLOTS/SHARDS announce, not
  // only to its seeds, so a proxy in front of the seeds does not sit on its path.
  get proxy() {
    return null;
  }
}

// ---------------------------------------------------------------------------

/** engine `nats`: nats-server with JetStream, plus the Laravel ingestion redis-server. */
class NatsBroker {
  constructor(spawnFn) {
    this.engine = 'nats';
    this.name = 'NATS';
    this.spawnFn = spawnFn;
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'resonance-cluster-nats-'));
    this.proc = null;
    this.log = '';
    this.laravelReceiversCounted = true;
  }

  toString() {
    return `nats-server on ${this.port}`;
  }

  async create(laravelRedis) {
    [this.port, this.monitorPort] = await freePorts(2);
    await this.start();
    this.laravel = await laravelRedis();
    return this;
  }

  get url() {
    return `nats://127.0.0.1:${this.port}`;
  }

  nodeEnv(url = this.url) {
    return { RESONANCE_ADAPTER: 'nats', RESONANCE_NATS_URL: url, RESONANCE_REDIS_URL: this.laravel.url };
  }

  get running() {
    return !!this.proc && this.proc.exitCode === null && this.proc.signalCode === null;
  }

  /** Start (or restart: same port, same JetStream store) nats-server; until /healthz answers ok. */
  async start() {
    const proc = this.spawnFn(
      NATS_SERVER,
      ['-a', '127.0.0.1', '-p', String(this.port), '-m', String(this.monitorPort), '-js', '-sd', this.dir],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    this.proc = proc;
    for (const s of [proc.stdout, proc.stderr]) s.setEncoding('utf8').on('data', (d) => (this.log = (this.log + d).slice(-4000)));
    this.exited = new Promise((r) => proc.once('exit', (code, signal) => r({ code, signal })));
    await waitUntil(
      async () => {
        if (!this.running) return false;
        const r = await fetch(`http://127.0.0.1:${this.monitorPort}/healthz`, { signal: AbortSignal.timeout(1000) }).catch(() => null);
        return r?.status === 200;
      },
      15000,
      () => `nats-server /healthz ok on monitoring port ${this.monitorPort} (log: ${this.log})`,
      50,
    );
    return this;
  }

  async kill() {
    if (!this.running) return;
    this.proc.kill('SIGKILL');
    await withTimeout(this.exited, 5000, 'nats-server exit');
  }

  async stop() {
    await this.kill();
    await this.laravel?.stop();
    fs.rmSync(this.dir, { recursive: true, force: true });
  }

  /** Client connections subscribed to a subject containing the channel (monitoring /connz). */
  async routes(_app, channel) {
    const r = await fetch(`http://127.0.0.1:${this.monitorPort}/connz?subs=1&limit=1024`, { signal: AbortSignal.timeout(2000) });
    const j = await r.json();
    return (j.connections || []).filter((c) => (c.subscriptions_list || []).some((s) => s.includes(channel))).length;
  }

  get proxy() {
    return {
      port: this.port,
      url: (port) => `nats://127.0.0.1:${port}`,
      subscribesRoute: (text) => /(^|\n)SUB /.test(text),
      envVar: 'RESONANCE_NATS_URL',
    };
  }
}

// ---------------------------------------------------------------------------

/**
 * Start the broker of ENGINE (up to 3 attempts on fresh ports).
 * spawnFn: how to spawn (the harness tracks the pids); startRedis(): a fresh RedisServer.
 */
export async function startBroker({ spawnFn, startRedis }) {
  if (ENGINE === 'redis') return new RedisBroker(await startRedis());
  let lastErr;
  for (let i = 0; i < 3; i++) {
    const b = ENGINE === 'nats' ? new NatsBroker(spawnFn) : new RedisClusterBroker(spawnFn);
    try {
      return await (ENGINE === 'nats' ? b.create(startRedis) : b.create());
    } catch (e) {
      lastErr = e;
      await b.stop().catch(() => {});
    }
  }
  throw lastErr;
}
