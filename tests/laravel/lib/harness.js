// Harness for the Laravel-bridge end-to-end suite (adapted from tests/js/lib/harness.js).
//
// - startRedis(): a private `redis-server` on a free port (no persistence), killable and
//   restartable on the same port; publish()/evalPublish() send EXACTLY what Laravel's
//   RedisBroadcaster sends, through `redis-cli`.
// - startServer(): the real `resonance` binary configured through RESONANCE_* env
//   (Redis ingestion, auth endpoint, Socket.IO); startEchoServer(): `resonance start
//   --echo-config laravel-echo-server.json` with no RESONANCE_* variables at all.
// - startLaravelAuth(): an in-process HTTP endpoint behaving like Laravel's
//   /broadcasting/auth for the redis broadcaster (session cookie / bearer token), with
//   failure modes chosen by the channel name, recording every request.
// - Socket.IO clients: laravel-echo's socket.io connector over socket.io-client 2.5.0 and
//   4.8.x, with every received event frame recorded.
// - pusher-js / Echo pusher clients and a raw Pusher-protocol `ws` client.
// Every wait has a timeout and fails with a message that says what was expected.

import http from 'node:http';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, afterEach } from 'node:test';
import Echo from 'laravel-echo';
import Pusher from 'pusher-js';
import io2 from 'sio2';
import { io as io4 } from 'sio4';
import WebSocket from 'ws';
import {
  BIN,
  DEFAULT_WAIT_MS,
  REPO_ROOT,
  ManagedProcess,
  RedisServer,
  createClientTracker,
  envWithout,
  fetchJson,
  freePort,
  hmacHex,
  httpsGet,
  localChannelAuthorization,
  makeRawClientBase,
  md5Hex,
  printServerTails,
  pusherConnectOptions,
  pusherSubscribeWith,
  readBody,
  signApiRequest,
  signChannel,
  signedApiRequest,
  sleep,
  spawnAndWaitUp,
  startRedisWith,
  toToml,
  tryJson,
  uid,
  waitUntil,
  withRetries,
  withTimeout,
} from '../../common/harness-core.js';

export {
  BIN,
  DEFAULT_WAIT_MS,
  REPO_ROOT,
  freePort,
  hmacHex,
  httpsGet,
  md5Hex,
  signApiRequest,
  signChannel,
  sleep,
  toToml,
  uid,
  waitUntil,
  withTimeout,
};

export const APP = Object.freeze({
  id: '515151',
  key: 'laravel-test-key',
  secret: 'laravel-test-secret',
});

/** seconds given to the server as RESONANCE_AUTH_TIMEOUT */
export const AUTH_TIMEOUT_S = 1;
/** how long the auth endpoint sleeps for channels containing "slow" */
export const SLOW_AUTH_MS = 3000;

export const LARAVEL_EVENT = 'App\\Events\\OrderShipped';

// ---------------------------------------------------------------------------
// Redis

/** A private redis-server (see RedisServer); opts.password sets requirepass. */
export class RedisProcess extends RedisServer {
  constructor(port, { password } = {}) {
    super(port, { password, resetLog: true });
  }
}

export function startRedis(opts = {}) {
  return startRedisWith((port) => new RedisProcess(port, opts));
}

/** The exact body Laravel's RedisBroadcaster publishes. */
export function laravelPayload(event = LARAVEL_EVENT, data = { id: 5 }, socket = null) {
  return JSON.stringify({ event, data, socket });
}

// ---------------------------------------------------------------------------
// the server process

export class ServerProcess extends ManagedProcess {
  constructor({ proc, host, port, app, label, cleanup }) {
    super({ proc, host, port, app, maxLines: 3000, tailLines: 60 });
    this.label = label;
    this.cleanup = cleanup;
  }

  async stop(graceMs = 5000) {
    await super.stop(graceMs);
    this.cleanup?.();
    return this.exitInfo;
  }

  /** GET a path on the server; resolves { status, text, json }. */
  async get(p, headers = {}) {
    if (this.tls) {
      const r = await httpsGet(`${this.httpUrl}${p}`, this.tls.ca, headers);
      return { ...r, json: tryJson(r.text) };
    }
    return fetchJson(`${this.httpUrl}${p}`, { headers });
  }
}

function spawnAndWait({ args, env, host, port, app, label, cleanup, tls }) {
  return spawnAndWaitUp({
    bin: BIN,
    args,
    env,
    create: (proc) => {
      const server = new ServerProcess({ proc, host, port, app, label, cleanup });
      if (tls) server.tls = tls;
      return server;
    },
    probe: tls ? async (server) => (await httpsGet(`${server.httpUrl}/up`, tls.ca)).status : undefined,
    exitName: `server (${args.join(' ')})`,
  });
}

/** The process environment without any RESONANCE_* / LARAVEL_ECHO_SERVER_* variable. */
const cleanEnv = () => envWithout('RESONANCE_', 'LARAVEL_ECHO_SERVER_');

/**
 * Start resonance configured through the environment.
 * opts.redis   RedisProcess (or null for no Redis ingestion)
 * opts.prefix  RESONANCE_REDIS_PREFIX (default 'laravel_database_'; '' is passed as an empty value)
 * opts.auth    auth endpoint object (startLaravelAuth) or a URL string, or null
 * opts.env     extra env
 */
export function startServer(opts = {}) {
  const app = { ...APP, ...(opts.app || {}) };
  return withRetries(async () => {
    const host = '127.0.0.1';
    const port = opts.port || (await freePort());
    const env = {
      ...cleanEnv(),
      RESONANCE_HOST: host,
      RESONANCE_PORT: String(port),
      RESONANCE_APP_ID: app.id,
      RESONANCE_APP_KEY: app.key,
      RESONANCE_APP_SECRET: app.secret,
      RESONANCE_SOCKETIO: 'true',
      RESONANCE_AUTH_TIMEOUT: String(AUTH_TIMEOUT_S),
      RUST_LOG: process.env.RUST_LOG || 'info',
      NO_COLOR: '1',
    };
    if (opts.redis) {
      env.RESONANCE_REDIS_URL = opts.redis.url;
      env.RESONANCE_REDIS_PREFIX = opts.prefix === undefined ? 'laravel_database_' : opts.prefix;
    }
    if (opts.auth) env.RESONANCE_AUTH_ENDPOINT = typeof opts.auth === 'string' ? opts.auth : opts.auth.endpoint;
    Object.assign(env, opts.env || {});
    const s = await spawnAndWait({ args: ['start', '--host', host, '--port', String(port)], env, host, port, app, label: opts.label });
    s.redis = opts.redis || null;
    s.prefix = env.RESONANCE_REDIS_PREFIX;
    s.mode = 'env';
    return s;
  });
}

/**
 * Start `resonance start --config FILE` from a TOML config ({server, apps}) with no
 * RESONANCE_* env. `apiApp` (default apps[0]) is the app used by pusherApi()/waitSubscriptions().
 */
export function startTomlServer(config, { apiApp } = {}) {
  return withRetries(async () => {
    const host = '127.0.0.1';
    const port = await freePort();
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'resonance-toml-'));
    const file = path.join(dir, 'resonance.toml');
    fs.writeFileSync(file, toToml({ server: { host, port, ...(config.server || {}) }, apps: config.apps }));
    const env = { ...cleanEnv(), RUST_LOG: process.env.RUST_LOG || 'info', NO_COLOR: '1' };
    const a = apiApp || config.apps[0];
    const s = await spawnAndWait({
      args: ['start', '--config', file],
      env,
      host,
      port,
      app: { id: a.id, key: a.key, secret: a.secret },
      cleanup: () => fs.rmSync(dir, { recursive: true, force: true }),
    });
    s.mode = 'env';
    s.configText = fs.readFileSync(file, 'utf8');
    return s;
  });
}

/**
 * Start `resonance start --echo-config FILE` with a laravel-echo-server.json built from
 * `configFor(port)` (a function receiving the chosen port) — no RESONANCE_* env.
 */
export function startEchoServer(configFor, { env: extraEnv = {}, listenPort, tls } = {}) {
  return withRetries(async () => {
    const port = await freePort();
    const config = configFor(port);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'resonance-echo-'));
    const file = path.join(dir, 'laravel-echo-server.json');
    fs.writeFileSync(file, JSON.stringify(config, null, 2));
    // no RUST_LOG unless the caller has one: devMode must be able to choose the level
    const env = { ...cleanEnv(), NO_COLOR: '1', ...extraEnv };
    const realPort = listenPort ? listenPort(port) : port;
    const client = (config.clients || [])[0] || {};
    const s = await spawnAndWait({
      args: ['start', '--echo-config', file],
      env,
      host: '127.0.0.1',
      port: realPort,
      // Every `clients` key is a secret API key (extra_api_keys); the app's
      // Pusher key is its own (generated), and is never accepted by that API.
      app: { id: client.appId, apiKey: client.key },
      cleanup: () => fs.rmSync(dir, { recursive: true, force: true }),
      tls,
    });
    s.mode = 'echo';
    s.config = config;
    s.configFile = file;
    return s;
  });
}

// ---------------------------------------------------------------------------
// Laravel-like /broadcasting/auth (RedisBroadcaster::auth + validAuthenticationResponse)

const USER_NAMES = { 1: 'Alice', 2: 'Bob', 3: 'Carol', 7: 'Grace', 8: 'Heidi', 9: 'Ivan', 10: 'Judy', 11: 'Mallory' };
export const userName = (id) => USER_NAMES[id] || `User ${id}`;
/** user_info as a Laravel channel callback would return it: ['id' => .., 'name' => ..] */
export const userInfo = (id) => ({ id: Number(id), name: userName(id) });

/** The Laravel user: cookie laravel_session=<id> or Authorization: Bearer <id>. */
function laravelUser(req) {
  const cookie = req.headers.cookie || '';
  const m = /(?:^|;\s*)laravel_session=([^;]+)/.exec(cookie);
  if (m) return decodeURIComponent(m[1]);
  const a = /^Bearer\s+(.+)$/i.exec(req.headers.authorization || '');
  if (a) return a[1].trim();
  return null;
}

/**
 * Channel-name driven behaviour:
 *   "slow"     sleep SLOW_AUTH_MS (longer than the server's auth timeout), then 200
 *   "redirect" 302 Location: /login (what Laravel does for a guest with web middleware)
 *   "error"    500
 *   "down"     the TCP connection is destroyed without an answer
 *   "forbidden" 403 even with a user
 *   "strdata"  presence channel_data returned as a JSON string instead of an object
 * No user → 403 (AccessDeniedHttpException). Private → body `true`; presence →
 * {"channel_data":{"user_id":N,"user_info":{...}}}.
 */
export async function startLaravelAuth() {
  const requests = [];
  const waiters = [];
  const sockets = new Set();
  const stats = { inflight: 0, maxInflight: 0 };
  const srv = http.createServer(async (req, res) => {
    stats.inflight++;
    stats.maxInflight = Math.max(stats.maxInflight, stats.inflight);
    let done = false;
    const finish = () => {
      if (!done) {
        done = true;
        stats.inflight--;
      }
    };
    res.on('close', finish);
    req.socket.on('close', finish);
    const url = new URL(req.url, 'http://localhost');
    const body = await readBody(req);
    const form = Object.fromEntries(new URLSearchParams(body));
    const user = laravelUser(req);
    const record = { at: Date.now(), method: req.method, path: url.pathname, headers: req.headers, body, form, user, status: 0 };
    requests.push(record);
    for (const w of [...waiters]) w();
    const reply = (status, text, headers = {}) => {
      record.status = status;
      if (res.destroyed) return;
      res.writeHead(status, { 'Content-Type': 'application/json', ...headers });
      res.end(text);
    };
    if (url.pathname !== '/broadcasting/auth') return reply(404, JSON.stringify({ message: 'Not Found' }));
    if (req.method !== 'POST') return reply(405, JSON.stringify({ message: 'Method Not Allowed' }));
    const channel = form.channel_name || '';
    if (channel.includes('down')) {
      record.status = 'destroyed';
      req.socket.destroy();
      return;
    }
    if (channel.includes('slow')) await sleep(SLOW_AUTH_MS);
    if (channel.includes('redirect')) return reply(302, '', { Location: `http://127.0.0.1:${port}/login`, 'Content-Type': 'text/html' });
    if (channel.includes('error')) return reply(500, '<html>Server Error</html>', { 'Content-Type': 'text/html' });
    if (!channel) return reply(422, JSON.stringify({ message: 'channel_name missing' }));
    if (!user || channel.includes('forbidden')) return reply(403, JSON.stringify({ message: 'This action is unauthorized.' }));
    if (channel.startsWith('presence-')) {
      const channelData = { user_id: /^\d+$/.test(user) ? Number(user) : user, user_info: userInfo(user) };
      const out = channel.includes('strdata') ? { channel_data: JSON.stringify(channelData) } : { channel_data: channelData };
      return reply(200, JSON.stringify(out));
    }
    if (channel.startsWith('private-')) return reply(200, 'true');
    return reply(403, JSON.stringify({ message: 'not a private channel' }));
  });
  srv.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise((r) => srv.listen(0, '127.0.0.1', r));
  const { port } = srv.address();
  return {
    port,
    host: `http://127.0.0.1:${port}`,
    endpoint: `http://127.0.0.1:${port}/broadcasting/auth`,
    requests,
    stats,
    /** requests whose channel_name is `channel` */
    forChannel: (channel) => requests.filter((r) => r.form.channel_name === channel),
    /** wait for the n-th request for `channel` */
    waitFor(channel, n = 1, ms = DEFAULT_WAIT_MS) {
      const found = () => requests.filter((r) => r.form.channel_name === channel).length >= n;
      if (found()) return Promise.resolve(requests.filter((r) => r.form.channel_name === channel)[n - 1]);
      let w;
      return withTimeout(
        new Promise((resolve) => {
          w = () => found() && resolve(requests.filter((r) => r.form.channel_name === channel)[n - 1]);
          waiters.push(w);
        }),
        ms,
        `auth request #${n} for ${channel} (got requests for: ${JSON.stringify(requests.map((r) => r.form.channel_name))})`,
      ).finally(() => waiters.splice(waiters.indexOf(w), 1));
    },
    close: () =>
      new Promise((r) => {
        for (const s of sockets) s.destroy();
        srv.close(() => r());
      }),
  };
}

// ---------------------------------------------------------------------------
// HTTP APIs

/** Signed Pusher API request (env-configured server). `apiPath` relative to /apps/{id}. */
export async function pusherApi(server, method, apiPath, { query = {}, body } = {}) {
  const { status, json, text, headers } = await signedApiRequest(server.httpUrl, server.app, method, `/apps/${server.app.id}${apiPath}`, { query, body });
  return { status, json, text, headers };
}

/** laravel-echo-server style API request: API key as Bearer (default) or ?auth_key=. */
export async function echoApi(server, method, apiPath, { key = server.app.apiKey, body, asQuery = false, appId = server.app.id, rawPath } = {}) {
  let urlPath = rawPath || `/apps/${appId}${apiPath}`;
  const headers = {};
  if (asQuery) urlPath += `${urlPath.includes('?') ? '&' : '?'}auth_key=${encodeURIComponent(key)}`;
  else if (key !== null) headers.Authorization = `Bearer ${key}`;
  let bodyStr;
  if (body !== undefined) {
    bodyStr = typeof body === 'string' ? body : JSON.stringify(body);
    headers['Content-Type'] = 'application/json';
  }
  return fetchJson(`${server.httpUrl}${urlPath}`, { method, headers, body: bodyStr });
}

/** Current subscription count of `channel` (through whichever API the server mode has). */
export async function subscriptionCount(server, channel) {
  if (server.mode === 'echo') {
    const r = await echoApi(server, 'GET', `/channels/${encodeURIComponent(channel)}`);
    if (r.status !== 200) throw new Error(`GET channel ${channel}: HTTP ${r.status} ${r.text}`);
    return r.json.subscription_count ?? 0;
  }
  const r = await pusherApi(server, 'GET', `/channels/${encodeURIComponent(channel)}`, { query: { info: 'subscription_count' } });
  if (r.status !== 200) throw new Error(`GET channel ${channel}: HTTP ${r.status} ${r.text}`);
  return r.json.subscription_count ?? 0;
}

/** Wait until `channel` has exactly `n` subscriptions (the server has processed the subscribes). */
export function waitSubscriptions(server, channel, n, ms = DEFAULT_WAIT_MS) {
  let last;
  return waitUntil(
    async () => {
      last = await subscriptionCount(server, channel);
      return last === n;
    },
    ms,
    () => `subscription_count of ${channel} == ${n} (last: ${last})`,
    40,
  );
}

/** Wait until the server's Redis ingestion receives publishes on `prefix` (PUBLISH counts a receiver). */
export async function waitIngestion(redis, prefix, ms = 10000) {
  let last;
  await waitUntil(
    async () => {
      last = await redis.publish(`${prefix}resonance-test-probe`, laravelPayload('probe', {}));
      return last >= 1;
    },
    ms,
    () => `the server to PSUBSCRIBE "${prefix}*" on Redis (PUBLISH probe receivers: ${last})`,
    100,
  );
}

/** Trigger through the signed Pusher API. */
export async function pusherTrigger(server, channel, name, data) {
  const r = await pusherApi(server, 'POST', '/events', { body: { name, channel, data: JSON.stringify(data) } });
  if (r.status !== 200) throw new Error(`trigger failed: HTTP ${r.status} ${r.text}`);
  return r;
}

// ---------------------------------------------------------------------------
// client tracking

export const { track, closeAll: closeAllClients } = createClientTracker();

// ---------------------------------------------------------------------------
// Socket.IO through laravel-echo

export const IO = { 2: io2, 4: io4 };

/**
 * A Socket.IO Echo client. Recorded frames: `sio.frames` (every event packet's args:
 * [event, channel, data]); `sio.next(pred)` waits for one.
 * opts.version 2|4, opts.cookie (handshake Cookie via extraHeaders), opts.authHeaders
 * (Echo `auth.headers`, sent in every subscribe payload; with 4.x also the CONNECT
 * payload), opts.bearerToken / opts.csrfToken (Echo options), opts.transports.
 */
export class SioClient {
  constructor(server, { version = 2, cookie, headers, authHeaders = {}, bearerToken, csrfToken, transports = ['websocket'], reconnection = false, host, ca } = {}) {
    this.version = version;
    this.frames = [];
    this.waiters = [];
    this.consumed = new Set();
    const opts = {
      broadcaster: 'socket.io',
      host: host || server.httpUrl,
      client: IO[version],
      // own objects: Echo's defaults are shared (and mutated for csrf/bearer tokens)
      auth: { headers: { ...authHeaders } },
      userAuthentication: { endpoint: '/broadcasting/user-auth', headers: {} },
      forceNew: true,
      reconnection,
      timeout: 5000,
      withoutInterceptors: true,
    };
    if (transports) opts.transports = transports;
    if (ca || server.tls) opts.ca = ca || server.tls.ca;
    if (cookie || headers) opts.extraHeaders = { ...(headers || {}), ...(cookie ? { Cookie: cookie } : {}) };
    if (bearerToken) opts.bearerToken = bearerToken;
    if (csrfToken) opts.csrfToken = csrfToken;
    this.echo = track(new Echo(opts));
    this.socket = this.echo.connector.socket;
    const orig = this.socket.onevent;
    const self = this;
    this.socket.onevent = function (packet) {
      self.frames.push({ args: packet.data || [], at: Date.now() });
      for (const w of [...self.waiters]) w();
      return orig.call(this, packet);
    };
    this.socket.on('disconnect', (reason) => {
      this.disconnectReason = reason;
      for (const w of [...this.waiters]) w();
    });
    this.connectErrors = [];
    this.socket.on('connect_error', (e) => this.connectErrors.push(String(e && e.message ? e.message : e)));
  }

  static async connect(server, opts = {}) {
    const c = new SioClient(server, opts);
    await c.connected();
    return c;
  }

  connected(ms = DEFAULT_WAIT_MS) {
    return waitUntil(
      () => this.socket.connected && this.echo.socketId(),
      ms,
      `socket.io-client ${this.version}.x connected (errors: ${JSON.stringify(this.connectErrors)})`,
    );
  }

  get id() {
    return this.echo.socketId();
  }

  get isConnected() {
    return this.socket.connected;
  }

  /** Frames [event, channel, ...] matching pred, consumed or not. */
  all(pred = () => true) {
    return this.frames.filter((f) => pred(f.args)).map((f) => f.args);
  }

  count(event, channel) {
    return this.all((a) => a[0] === event && (channel === undefined || a[1] === channel)).length;
  }

  next(pred, ms = DEFAULT_WAIT_MS, label = 'frame') {
    const find = () => {
      for (let i = 0; i < this.frames.length; i++) {
        if (!this.consumed.has(i) && pred(this.frames[i].args)) {
          this.consumed.add(i);
          return this.frames[i].args;
        }
      }
      return null;
    };
    const f = find();
    if (f) return Promise.resolve(f);
    let w;
    return withTimeout(
      new Promise((resolve) => {
        w = () => {
          const m = find();
          if (m) resolve(m);
        };
        this.waiters.push(w);
      }),
      ms,
      `socket.io-client ${this.version}.x ${label} (received: ${this.summary()}${this.disconnectReason ? `; disconnected: ${this.disconnectReason}` : ''})`,
    ).finally(() => (this.waiters = this.waiters.filter((x) => x !== w)));
  }

  nextEvent(event, channel, ms) {
    return this.next((a) => a[0] === event && (channel === undefined || a[1] === channel), ms, `${event}${channel ? ` on ${channel}` : ''}`);
  }

  summary() {
    return JSON.stringify(this.frames.slice(-10).map((f) => f.args)).slice(0, 1500);
  }

  disconnect() {
    try {
      this.echo.disconnect();
    } catch {
      /* ignore */
    }
  }
}

// ---------------------------------------------------------------------------
// pusher-js / Echo pusher / raw Pusher protocol

/** A pusher-js client that signs private/presence subscriptions locally with the app secret. */
export function pusherClient(server, { user, app = server.app } = {}) {
  const p = new Pusher(app.key, {
    ...pusherConnectOptions(server),
    channelAuthorization: localChannelAuthorization(app, () => ({ user_id: Number(user), user_info: userInfo(user) })),
  });
  return track(p);
}

export async function connectedPusher(server, opts) {
  const p = pusherClient(server, opts);
  await waitUntil(() => p.connection.state === 'connected', DEFAULT_WAIT_MS, `pusher-js connected (state ${p.connection.state})`);
  return p;
}

/** Subscribe with pusher-js and wait for success. */
export function pusherSubscribe(pusher, channelName, ms = DEFAULT_WAIT_MS) {
  return pusherSubscribeWith(pusher, channelName, ms, 'pusher-js ', 'pusher-js subscription_succeeded');
}

/** laravel-echo with the pusher broadcaster against the server's Pusher endpoint. */
export function echoPusher(server) {
  return track(
    new Echo({
      broadcaster: 'pusher',
      key: server.app.key,
      ...pusherConnectOptions(server),
      auth: { headers: {} },
      userAuthentication: { endpoint: '/broadcasting/user-auth', headers: {} },
      withoutInterceptors: true,
      Pusher,
    }),
  );
}

/** Records every call of a callback; `nth(n)` waits for the n-th call. */
export function capture(label) {
  const calls = [];
  const wakers = new Set();
  const cb = (...args) => {
    calls.push(args);
    for (const w of [...wakers]) w();
  };
  const nth = (n, ms = DEFAULT_WAIT_MS) => {
    let w;
    return withTimeout(
      new Promise((resolve) => {
        w = () => calls.length >= n && resolve(calls[n - 1]);
        wakers.add(w);
        w();
      }),
      ms,
      `${label} (call #${n}; calls so far: ${JSON.stringify(calls)})`,
    ).finally(() => wakers.delete(w));
  };
  return { cb, calls, nth };
}

/** Raw Pusher-protocol client over `ws`. */
export class RawClient extends makeRawClientBase(WebSocket) {
  static async connect(server, { key = server.app.key, headers = {} } = {}) {
    const c = new RawClient();
    const ws = new WebSocket(server.wsUrl(key), { headers });
    track(c);
    c._attach(ws);
    await c._awaitOpen('raw WebSocket open');
    const est = await c.nextEvent('pusher:connection_established');
    c.socketId = est.parsed.socket_id;
    return c;
  }

  _closeText() {
    return `${this.closeInfo.code}`;
  }

  summary() {
    return super.summary(10);
  }
}

// ---------------------------------------------------------------------------
// per-file setup

/**
 * Per test file: one hermetic redis-server (started lazily by `ctx.redis()`), servers and
 * auth endpoints stopped at the end; clients closed after each test; server log tails
 * printed for failed tests.
 */
export function useHarness() {
  const servers = [];
  const auths = [];
  let redisP = null;
  const ctx = {
    servers,
    redis() {
      if (!redisP) redisP = startRedis();
      return redisP;
    },
    async startServer(opts) {
      const s = await startServer(opts);
      servers.push(s);
      return s;
    },
    async startEchoServer(configFor, opts) {
      const s = await startEchoServer(configFor, opts);
      servers.push(s);
      return s;
    },
    async startTomlServer(config, opts) {
      const s = await startTomlServer(config, opts);
      servers.push(s);
      return s;
    },
    async startAuth() {
      const a = await startLaravelAuth();
      auths.push(a);
      return a;
    },
  };
  afterEach((t) => {
    closeAllClients();
    printServerTails(t, servers, 30, (s) => !s.exitInfo || Date.now() - s.exitInfo.at < 60000);
  });
  after(async () => {
    closeAllClients();
    await Promise.all(servers.map((s) => s.stop()));
    await Promise.all(auths.map((a) => a.close()));
    if (redisP) await (await redisP.catch(() => null))?.stop();
  });
  return ctx;
}

export { Echo, Pusher, io2, io4 };
