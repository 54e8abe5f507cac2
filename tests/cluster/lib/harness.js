// Harness for the multi-node (cluster) suite: N `resonance` processes sharing one Redis
// through RESONANCE_ADAPTER=redis. Adapted from tests/js/lib/harness.js and
// tests/laravel/lib/harness.js.
//
// - startRedis(): a FRESH private `redis-server` on a free port (no persistence), killable
//   (SIGKILL, like a crash) and restartable on the same port.
// - the broker of the engine under test (env CLUSTER_ENGINE = redis | redis-cluster | nats, see
//   brokers.js): `h.broker()` (kill/start/routes), `h.redis()` the Redis Laravel PUBLISHes on.
// - startNode(): the real binary (env RESONANCE_BIN, default <repo>/target/release/resonance)
//   on a free port with the broker's RESONANCE_ADAPTER / _REDIS_URL / _NATS_URL, the shared app
//   credentials, RESONANCE_NODE_TIMEOUT=3, RESONANCE_QUERY_TIMEOUT=1000; waits for GET /up;
//   stopped by pid (SIGTERM, SIGKILL after 5 s) or killed by pid (SIGKILL).
// - api()/trigger()/query helpers: signed Pusher HTTP API requests to any node.
// - RawClient: raw `ws` Pusher-protocol client that signs private/presence subscriptions and
//   user sign-in locally with the app secret.
// - pusher-js clients that sign locally (channelAuthorization/userAuthentication customHandler),
//   ChannelRecorder records everything a pusher-js channel receives.
// - syncDelivery(): proves a delivery path (node -> channel -> sinks) works before a test
//   counts deliveries (triggers probe events until every sink has one).
// Every wait has a timeout and fails with a message saying what was expected and what was seen.

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, afterEach, beforeEach } from 'node:test';
import Pusher from 'pusher-js';
import WebSocket from 'ws';
import {
  BIN,
  DEFAULT_WAIT_MS,
  REPO_ROOT,
  ManagedProcess,
  RedisServer,
  closeClient as closeClientCore,
  envWithout,
  freePort,
  hmacHex,
  localChannelAuthorization,
  makeRawClientBase,
  md5Hex,
  pusherConnectOptions,
  pusherSubscribeWith,
  signApiRequest,
  signChannel,
  signUser,
  signedApiRequest,
  sleep,
  spawnAndWaitUp,
  startRedisWith,
  triggerEvent,
  tryJson,
  uid,
  waitUntil,
  withRetries,
  withTimeout,
} from '../../common/harness-core.js';
import { BROKER_NAME, ENGINE, skipNote, startBroker } from './brokers.js';

export { BROKER_NAME, ENGINE, skipNote };

export { BIN, DEFAULT_WAIT_MS, REPO_ROOT, freePort, hmacHex, md5Hex, signApiRequest, signChannel, signUser, sleep, uid, waitUntil, withTimeout };

export const APP = Object.freeze({
  id: '616161',
  key: 'cluster-test-key',
  secret: 'cluster-test-secret',
});

/** RESONANCE_NODE_TIMEOUT given to every node (seconds). */
export const NODE_TIMEOUT_S = 3;
/** RESONANCE_QUERY_TIMEOUT given to every node (milliseconds). */
export const QUERY_TIMEOUT_MS = 1000;
/** The Laravel prefix used unless a test file asks for another one. */
export const LARAVEL_PREFIX = 'laravel_database_';

/** How long we wait for a cross-node path to start working (subscription propagation). */
export const SYNC_WAIT_MS = 10000;
/**
 * Quiet time before asserting that nothing (more) arrived, ONLY where no sentinel can follow the
 * same path (expectExactlyOnce without `via`, and the waits whose comment says why). Prefer
 * expectExactlyOnce({ via }) / awaitSentinel().
 */
export const SETTLE_MS = 800;

const USER_NAMES = { 1: 'Alice', 2: 'Bob', 3: 'Carol', 4: 'Dave', 5: 'Eve', 6: 'Frank', 7: 'Grace', 8: 'Heidi', 9: 'Ivan' };
export const userInfo = (id) => ({ name: USER_NAMES[id] || `User ${id}` });

// Every child we spawn, so that an aborted run does not leave processes behind (killed by pid):
// on exit / SIGTERM / SIGINT of this process, and by a detached watchdog when this process is
// killed outright (e.g. the test runner's per-file timeout).
const children = new Set();
const PIDFILE = path.join(os.tmpdir(), `resonance-cluster-pids-${process.pid}`);
let watchdog = false;

function writePids() {
  try {
    fs.writeFileSync(PIDFILE, [...children].map((c) => c.pid).join('\n'));
  } catch {
    /* best effort */
  }
}

function killChildren() {
  for (const c of children) {
    try {
      if (c.exitCode === null && c.signalCode === null) process.kill(c.pid, 'SIGKILL');
    } catch {
      /* already gone */
    }
  }
  children.clear();
  fs.rmSync(PIDFILE, { force: true });
}

function startWatchdog() {
  if (watchdog) return;
  watchdog = true;
  const code = `
    const fs = require('fs');
    const parent = Number(process.argv[1]);
    const file = process.argv[2];
    const alive = (p) => { try { process.kill(p, 0); return true; } catch { return false; } };
    setInterval(() => {
      if (alive(parent)) return;
      let pids = [];
      try { pids = fs.readFileSync(file, 'utf8').split('\\n').filter(Boolean).map(Number); } catch {}
      for (const p of pids) { try { process.kill(p, 'SIGKILL'); } catch {} }
      try { fs.unlinkSync(file); } catch {}
      process.exit(0);
    }, 500);`;
  const w = spawn(process.execPath, ['-e', code, String(process.pid), PIDFILE], { detached: true, stdio: 'ignore' });
  w.unref();
}

process.on('exit', killChildren);
for (const sig of ['SIGTERM', 'SIGINT', 'SIGHUP']) {
  process.once(sig, () => {
    killChildren();
    process.exit(128 + (sig === 'SIGINT' ? 2 : sig === 'SIGHUP' ? 1 : 15));
  });
}

function remember(proc) {
  startWatchdog();
  children.add(proc);
  writePids();
  proc.once('exit', () => {
    children.delete(proc);
    writePids();
  });
  return proc;
}

// ---------------------------------------------------------------------------
// Redis

/** A private redis-server (see RedisServer), tracked for cleanup by pid. */
export class RedisProcess extends RedisServer {
  constructor(port) {
    super(port, { tmpPrefix: 'resonance-cluster-redis-', spawnFn: (...args) => remember(spawn(...args)) });
  }
}

export function startRedis() {
  return startRedisWith((port) => new RedisProcess(port));
}

/** The broker of CLUSTER_ENGINE (see brokers.js), its processes tracked for cleanup by pid. */
export function startClusterBroker() {
  return startBroker({ spawnFn: (...args) => remember(spawn(...args)), startRedis });
}

/** The exact body Laravel's RedisBroadcaster publishes. */
export function laravelPayload(event, data, socket = null) {
  return JSON.stringify({ event, data, socket });
}

// ---------------------------------------------------------------------------
// resonance nodes

export class NodeProcess extends ManagedProcess {
  constructor({ proc, host, port, app, label, env }) {
    super({ proc, host, port, app, maxLines: 3000, tailLines: 40 });
    this.pid = proc.pid;
    this.label = label;
    this.env = env;
  }

  toString() {
    return `node ${this.label} (port ${this.port}, pid ${this.pid})`;
  }

  /** SIGKILL by pid (a crash: no goodbye to Redis or clients). */
  async kill() {
    if (this.running) this.proc.kill('SIGKILL');
    return withTimeout(this.exited, 5000, `${this} exit after SIGKILL`);
  }

  /** GET a path; resolves { status, text, json, ms }. */
  async get(p, timeoutMs = DEFAULT_WAIT_MS) {
    const t0 = Date.now();
    const res = await fetch(`${this.httpUrl}${p}`, { signal: AbortSignal.timeout(timeoutMs) });
    const text = await res.text();
    return { status: res.status, text, json: tryJson(text), ms: Date.now() - t0 };
  }

  /** Whether /ready says the cluster adapter reaches Redis (false when the request fails). */
  async adapterHealthy() {
    try {
      const r = await this.get('/ready', 2000);
      return r.status === 200 && r.json?.adapter_healthy === true;
    } catch {
      return false;
    }
  }

  /** Status of GET /ready, or 0 when the request fails. */
  async readyStatus() {
    try {
      return (await this.get('/ready', 2000)).status;
    } catch {
      return 0;
    }
  }
}

/** The environment without any RESONANCE_* variable of the caller. */
const cleanEnv = () => envWithout('RESONANCE_');

/**
 * Start one cluster node.
 * opts.broker         the broker (startClusterBroker()); its nodeEnv() gives the adapter variables
 * opts.brokerUrl      the broker's URL variable overridden (e.g. a proxy in front of it)
 * opts.redis          without opts.broker: a RedisProcess (or { url }) for RESONANCE_ADAPTER=redis
 * opts.label          'A', 'B', ... (for messages)
 * opts.laravelPrefix  RESONANCE_REDIS_PREFIX (default LARAVEL_PREFIX; '' is passed as empty)
 * opts.clusterPrefix  RESONANCE_CLUSTER_PREFIX (not set when undefined: the default 'resonance')
 * opts.env            extra env (overrides everything above)
 * opts.bin, opts.args  another program speaking RESONANCE_* (e.g. an example): args(host, port)
 * opts.tls            { cert, key } PEM paths: the node serves https/wss (RESONANCE_TLS_CERT/KEY)
 */
export function startNode(opts) {
  const app = { ...APP, ...(opts.app || {}) };
  return withRetries(() => startNodeOnce(app, opts));
}

async function startNodeOnce(app, opts) {
  const host = '127.0.0.1';
  const port = await freePort();
  const env = {
    ...cleanEnv(),
    RESONANCE_HOST: host,
    RESONANCE_PORT: String(port),
    RESONANCE_APP_ID: app.id,
    RESONANCE_APP_KEY: app.key,
    RESONANCE_APP_SECRET: app.secret,
    ...(opts.broker ? opts.broker.nodeEnv(opts.brokerUrl) : { RESONANCE_ADAPTER: 'redis', RESONANCE_REDIS_URL: opts.brokerUrl || opts.redis.url }),
    RESONANCE_REDIS_PREFIX: opts.laravelPrefix === undefined ? LARAVEL_PREFIX : opts.laravelPrefix,
    RESONANCE_NODE_TIMEOUT: String(NODE_TIMEOUT_S),
    RESONANCE_QUERY_TIMEOUT: String(QUERY_TIMEOUT_MS),
    RESONANCE_SHUTDOWN_GRACE: '2',
    RUST_LOG: process.env.RUST_LOG || 'info',
    NO_COLOR: '1',
  };
  // CLUSTER_TEST_ADAPTER=local is a negative control: the suite must then fail
  if (process.env.CLUSTER_TEST_ADAPTER) env.RESONANCE_ADAPTER = process.env.CLUSTER_TEST_ADAPTER;
  if (opts.clusterPrefix !== undefined) env.RESONANCE_CLUSTER_PREFIX = opts.clusterPrefix;
  // CLUSTER_TEST_ROUTING=broadcast runs the suite on the single-channel design (see README)
  if (process.env.CLUSTER_TEST_ROUTING) env.RESONANCE_CLUSTER_ROUTING = process.env.CLUSTER_TEST_ROUTING;
  if (opts.tls) Object.assign(env, { RESONANCE_TLS_CERT: opts.tls.cert, RESONANCE_TLS_KEY: opts.tls.key });
  Object.assign(env, opts.env || {});
  const label = opts.label || '?';
  return spawnAndWaitUp({
    bin: opts.bin || BIN,
    args: opts.args ? opts.args(host, port) : ['start', '--host', host, '--port', String(port)],
    env,
    spawnFn: (...args) => remember(spawn(...args)),
    create: (proc) => {
      const node = new NodeProcess({ proc, host, port, app, label, env });
      node.tls = Boolean(opts.tls);
      return node;
    },
    name: `node ${label}`,
    exitPhrase: 'exited before answering /up',
  });
}

/** Wait until every node answers /ready 200 with adapter_healthy (the adapter is connected to Redis). */
export async function waitReady(nodes, ms = 10000) {
  const status = {};
  await waitUntil(
    async () => {
      for (const n of nodes) status[n.label] = await n.adapterHealthy();
      return nodes.every((n) => status[n.label] === true);
    },
    ms,
    () => `GET /ready 200 adapter_healthy on every node (last: ${JSON.stringify(status)})`,
    100,
  );
}

// ---------------------------------------------------------------------------
// HTTP API

/**
 * Signed request to a node's HTTP API. `apiPath` is relative to /apps/{id}.
 * Resolves { status, json, text, ms }.
 */
export async function api(node, method, apiPath, { query = {}, body, timeoutMs = DEFAULT_WAIT_MS } = {}) {
  const { status, json, text, ms } = await signedApiRequest(node.httpUrl, node.app, method, `/apps/${node.app.id}${apiPath}`, {
    query,
    body,
    timeoutMs,
    encodePath: true,
  });
  return { status, json, text, ms };
}

/** POST /events through `node`; throws unless 200. */
export function trigger(node, channel, name, data, extra = {}) {
  return triggerEvent(api, node, channel, name, data, extra, ` through ${node}`);
}

/** GET /channels/{name}?info=...; throws unless 200; resolves the JSON. */
export async function channelInfo(node, channel, info) {
  const r = await api(node, 'GET', `/channels/${channel}`, { query: info ? { info } : {} });
  if (r.status !== 200) throw new Error(`GET /channels/${channel} on ${node}: HTTP ${r.status} ${r.text}`);
  return r.json;
}

/** GET /channels/{name}/users; resolves the sorted list of ids (strings). */
export async function presenceUserIds(node, channel) {
  const r = await api(node, 'GET', `/channels/${channel}/users`);
  if (r.status !== 200) throw new Error(`GET /channels/${channel}/users on ${node}: HTTP ${r.status} ${r.text}`);
  return r.json.users.map((u) => String(u.id)).sort();
}

/** JSON with object keys sorted (order-insensitive comparison of API answers). */
export function canonical(v) {
  return JSON.stringify(v, (_k, x) => (x && typeof x === 'object' && !Array.isArray(x) ? Object.fromEntries(Object.entries(x).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) : x));
}

/** Wait until `fn(node)` deep-equals `expected` on every node; returns the per-node values. */
export async function waitAllNodes(nodes, fn, expected, ms = DEFAULT_WAIT_MS, label = 'value') {
  const want = canonical(expected);
  const last = {};
  await waitUntil(
    async () => {
      await Promise.all(
        nodes.map(async (n) => {
          try {
            last[n.label] = await fn(n);
          } catch (e) {
            last[n.label] = `error: ${e.message}`;
          }
        }),
      );
      return nodes.every((n) => canonical(last[n.label]) === want);
    },
    ms,
    () => `${label} == ${want} on every node (got ${JSON.stringify(last)})`,
    60,
  );
  return last;
}

// ---------------------------------------------------------------------------
// client tracking: clients opened during a test are closed after it; clients opened in a
// file's before() hook (or passed to persist()) live until the end of the file.

const liveClients = new Set();
const persistent = new Set();
let testScope = null; // clients opened by the running test

export function track(client) {
  liveClients.add(client);
  if (testScope) testScope.add(client);
  return client;
}

/** Keep `client` open after the current test (closed at the end of the file). */
export function persist(client) {
  if (testScope) testScope.delete(client);
  persistent.add(client);
  return client;
}

function closeClient(c) {
  closeClientCore(c);
  liveClients.delete(c);
}

export function closeAllClients() {
  for (const c of liveClients) closeClient(c);
  liveClients.clear();
  persistent.clear();
}

function beginTestScope() {
  testScope = new Set();
}

function endTestScope() {
  if (testScope) for (const c of testScope) closeClient(c);
  testScope = null;
}

// ---------------------------------------------------------------------------
// raw ws client

export class RawClient extends makeRawClientBase(WebSocket) {
  static async connect(node, { label } = {}) {
    const c = new RawClient();
    c.node = node;
    c.label = label || `raw@${node.label}`;
    const ws = new WebSocket(node.wsUrl());
    track(c);
    c._attach(ws);
    await c._awaitOpen(`raw WebSocket open on ${node}`, { upgradeError: (status) => `HTTP ${status} on upgrade to ${node}` });
    const est = await c.nextEvent('pusher:connection_established');
    c.socketId = est.parsed.socket_id;
    return c;
  }

  toString() {
    return this.label;
  }

  _prefix() {
    return `${this}: `;
  }

  _timeoutLabel(label) {
    return () => `${this}: ${label} (received: ${this.summary()})`;
  }

  /** Parsed data of every `event` received on `channel`. */
  received(event, channel) {
    return this.messages.filter((m) => m.event === event && m.channel === channel).map((m) => m.parsed);
  }

  summary() {
    return super.summary(14);
  }

  /** Subscribe to a public or private channel (private ones are signed locally). */
  subscribeChannel(channel) {
    return channel.startsWith('private-') ? this.subscribeOk(channel, { auth: signChannel(this.node.app, this.socketId, channel) }) : this.subscribeOk(channel);
  }

  /** Subscribe to a presence channel as `userId`; resolves the subscription_succeeded message. */
  subscribePresence(channel, userId, info = userInfo(userId)) {
    const channelData = JSON.stringify({ user_id: userId, user_info: info });
    this.userId = String(userId);
    return this.subscribeOk(channel, { auth: signChannel(this.node.app, this.socketId, channel, channelData), channel_data: channelData });
  }

  unsubscribe(channel) {
    this.send({ event: 'pusher:unsubscribe', data: { channel } });
  }

  /** pusher:signin as `userId`; waits for pusher:signin_success. */
  async signin(userId) {
    const userData = JSON.stringify({ id: String(userId), user_info: userInfo(userId) });
    this.send({ event: 'pusher:signin', data: { auth: signUser(this.node.app, this.socketId, userData), user_data: userData } });
    const m = await this.next((x) => x.event === 'pusher:signin_success' || x.event === 'pusher:error', DEFAULT_WAIT_MS, `signin reply for user ${userId}`);
    if (m.event !== 'pusher:signin_success') throw new Error(`${this}: signin as ${userId} failed: ${JSON.stringify(m)}`);
    return m;
  }

  whisper(channel, event, data) {
    this.send({ event, channel, data });
  }
}

// ---------------------------------------------------------------------------
// pusher-js

/**
 * A pusher-js client on `node` that authorizes channels and signs in locally.
 * opts.user: the presence user id / sign-in user (number or string).
 */
export function pusherClient(node, { user } = {}) {
  const app = node.app;
  const p = new Pusher(app.key, {
    ...pusherConnectOptions(node),
    channelAuthorization: localChannelAuthorization(app, () => ({ user_id: user, user_info: userInfo(user) })),
    userAuthentication: {
      customHandler: ({ socketId }, cb) => {
        const userData = JSON.stringify({ id: String(user), user_info: userInfo(user) });
        cb(null, { auth: signUser(app, socketId, userData), user_data: userData });
      },
    },
  });
  p.label = `pusher-js@${node.label}${user !== undefined ? `(user ${user})` : ''}`;
  p.node = node;
  return track(p);
}

export async function connectedPusher(node, opts) {
  const p = pusherClient(node, opts);
  await waitUntil(() => p.connection.state === 'connected', DEFAULT_WAIT_MS, () => `${p.label} connected (state ${p.connection.state})`);
  return p;
}

/** Subscribe with pusher-js; resolves the channel once subscribed (fails on subscription_error). */
export function pusherSubscribe(pusher, channelName, ms = DEFAULT_WAIT_MS) {
  return pusherSubscribeWith(pusher, channelName, ms, `${pusher.label}: `, `${pusher.label}: subscription_succeeded`);
}

/** Records every event a pusher-js channel (or the user object) emits, via bind_global. */
export class ChannelRecorder {
  constructor(target, channelName, label) {
    this.target = target;
    this.channel = channelName;
    this.label = label;
    this.items = [];
    this.handler = (event, data) => this.items.push({ event, data, at: Date.now() });
    target.bind_global(this.handler);
  }
  toString() {
    return this.label;
  }
  /** Data of every `event` (the channel argument is accepted for symmetry with RawClient). */
  received(event, _channel) {
    return this.items.filter((i) => i.event === event).map((i) => i.data);
  }
  summary() {
    return JSON.stringify(this.items.slice(-14).map((i) => i.event));
  }
  stop() {
    this.target.unbind_global(this.handler);
  }
}

/** Subscribe a pusher-js client and record its channel. */
export async function pusherSink(pusher, channelName) {
  const ch = await pusherSubscribe(pusher, channelName);
  return new ChannelRecorder(ch, channelName, `${pusher.label}[${channelName}]`);
}

// ---------------------------------------------------------------------------
// delivery assertions (sinks: RawClient or ChannelRecorder)

export const PROBE_EVENT = 'cluster-probe';

/**
 * Prove the path `node` -> `channel` -> every sink works: trigger probe events through `node`
 * until every sink has received at least one (bounded by `ms`). Probes carry a unique `probe`
 * number; use assertNoDuplicateProbes() afterwards to check none was delivered twice.
 */
export async function syncDelivery(node, channel, sinks, ms = SYNC_WAIT_MS) {
  const deadline = Date.now() + ms;
  const has = (s) => s.received(PROBE_EVENT, channel).length > 0;
  let seq = 0;
  for (;;) {
    await trigger(node, channel, PROBE_EVENT, { probe: `${Date.now()}-${++seq}` });
    const stepEnd = Math.min(deadline, Date.now() + 300);
    while (Date.now() < stepEnd && !sinks.every(has)) await sleep(20);
    if (sinks.every(has)) return;
    if (Date.now() >= deadline) {
      const missing = sinks.filter((s) => !has(s)).map(String);
      throw new Error(`cross-node path never worked: ${seq} probe events triggered on ${channel} through ${node} over ${ms} ms, never received by ${JSON.stringify(missing)}`);
    }
  }
}

/** Assert no probe event reached `sink` twice. */
export function assertNoDuplicateProbes(sink, channel) {
  const ids = sink.received(PROBE_EVENT, channel).map((d) => d.probe);
  const dup = ids.filter((x, i) => ids.indexOf(x) !== i);
  if (dup.length) throw new Error(`${sink}: probe events delivered more than once on ${channel}: ${JSON.stringify(dup)}`);
}

/** Number of `event` deliveries on `channel` at `sink` whose data matches `match` (an object subset). */
export function countMatching(sink, event, channel, match) {
  return sink.received(event, channel).filter((d) => matches(d, match)).length;
}

function matches(d, match) {
  if (match === undefined) return true;
  if (d === null || typeof d !== 'object') return false;
  return Object.entries(match).every(([k, v]) => JSON.stringify(d[k]) === JSON.stringify(v));
}

export const SENTINEL_EVENT = 'cluster-sentinel';

/**
 * Send a sentinel event on `channel` through `via` and wait until every sink in `sinks` has it.
 * `via` is a node (the sentinel is triggered through its HTTP API) or a function
 * `(event, data) => Promise` that sends it (e.g. a Laravel publish on Redis). One publisher's
 * events on one channel reach each receiver in order (the node's ordered fan-out lanes, one Redis
 * connection per node), so when the sentinel is in, so is everything sent that way before it.
 */
export async function awaitSentinel(via, channel, sinks, ms = SYNC_WAIT_MS) {
  const id = uid('sentinel');
  if (typeof via === 'function') await via(SENTINEL_EVENT, { id });
  else await trigger(via, channel, SENTINEL_EVENT, { id });
  const has = (s) => countMatching(s, SENTINEL_EVENT, channel, { id }) >= 1;
  await waitUntil(() => sinks.every(has), ms,
    () => `sentinel ${id} on ${channel} at ${JSON.stringify(sinks.filter((s) => !has(s)).map(String))}`, 20);
}

/** src/adapter/cluster/mod.rs LEAVE_GRACE: every node holds a member_removed back this long. */
export const LEAVE_GRACE_MS = 250;
/** Scheduling margin on top of LEAVE_GRACE_MS (the timers run on busy, shared CI cores). */
const LEAVE_MARGIN_MS = 350;

/**
 * Presence sentinel: a sentinel through every node of `nodeList` on `channel`, awaited at every
 * sink. A node's joins, leaves and events share one ordered Redis channel, so afterwards every
 * member_added caused so far has been delivered and every node has seen every leave. With
 * `leaves`, it then also waits out the member_removed hold (LEAVE_GRACE_MS, a timer on each node:
 * no message follows it), so a duplicate member_removed would have arrived by then.
 */
export async function presenceSettled(nodeList, channel, sinks, { leaves = false } = {}) {
  for (const n of nodeList) await awaitSentinel(n, channel, sinks);
  if (leaves) await sleep(LEAVE_GRACE_MS + LEAVE_MARGIN_MS);
}

/**
 * Wait until every sink in `sinks` has `event` (matching `match`) at least once, then assert each
 * has it EXACTLY once; every sink of `absent` must have it zero times. Before asserting, a
 * sentinel is sent the same way as the event (`via`: see awaitSentinel) and awaited at every sink
 * of `sentinelSinks` (default: sinks and absent; leave out the ones not subscribed to `channel`).
 * Without `via` (no sentinel can follow the same path) it waits SETTLE_MS instead.
 */
export async function expectExactlyOnce({ sinks, absent = [], event, channel, match, ms = DEFAULT_WAIT_MS, what = event, via, sentinelSinks }) {
  const counts = () => Object.fromEntries([...sinks, ...absent].map((s) => [String(s), countMatching(s, event, channel, match)]));
  await waitUntil(
    () => sinks.every((s) => countMatching(s, event, channel, match) >= 1),
    ms,
    () => `${what}: "${event}" ${JSON.stringify(match ?? {})} on ${channel} at every receiver (counts so far: ${JSON.stringify(counts())})`,
    20,
  );
  if (via) await awaitSentinel(via, channel, sentinelSinks || [...sinks, ...absent]);
  else await sleep(SETTLE_MS);
  const got = counts();
  const want = Object.fromEntries([...sinks.map((s) => [String(s), 1]), ...absent.map((s) => [String(s), 0])]);
  if (JSON.stringify(got) !== JSON.stringify(want))
    throw new Error(`${what}: expected deliveries per receiver ${JSON.stringify(want)}, got ${JSON.stringify(got)}`);
}

// ---------------------------------------------------------------------------
// per-file setup

/**
 * Per test file: a fresh broker of CLUSTER_ENGINE (`await h.broker()`: kill()/start()/routes();
 * `await h.redis()` is the Redis Laravel PUBLISHes on: the broker itself for `redis`), nodes
 * started with `h.startNode()` / `h.startCluster()`, all stopped by pid at the end (then the
 * broker is killed). Clients opened by a test are closed after it; failing tests print the
 * tails of every node's log.
 */
export function useCluster() {
  const nodes = [];
  let brokerP = null;
  const ctx = {
    nodes,
    engine: ENGINE,
    broker() {
      if (!brokerP) brokerP = startClusterBroker();
      return brokerP;
    },
    async redis() {
      return (await ctx.broker()).laravel;
    },
    async startNode(opts = {}) {
      const broker = opts.redis ? undefined : await ctx.broker();
      const n = await startNode({ ...opts, broker });
      nodes.push(n);
      return n;
    },
    /** Start `count` nodes labelled A, B, C...; waits for /up on each and (softly) /ready. */
    async startCluster(count, opts = {}) {
      const labels = 'ABCDEFGH';
      const out = [];
      for (let i = 0; i < count; i++) out.push(await ctx.startNode({ ...opts, label: opts.labels?.[i] || labels[i] }));
      try {
        await waitReady(out, 10000);
      } catch (e) {
        console.error(`warning: ${e.message}`);
      }
      return out;
    },
  };
  beforeEach(() => beginTestScope());
  afterEach((t) => {
    endTestScope();
    if (t.passed === false) {
      for (const n of nodes) {
        console.error(`--- log tail of ${n}${n.exitInfo ? ` (exited ${JSON.stringify(n.exitInfo)})` : ''} for "${t.name}" ---\n${n.logTail(30)}`);
      }
    }
  });
  after(async () => {
    closeAllClients();
    await Promise.all(nodes.map((n) => n.stop()));
    if (brokerP) await (await brokerP.catch(() => null))?.stop();
  });
  return ctx;
}

export { Pusher };
