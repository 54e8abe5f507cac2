// Test harness for the Resonance integration suite.
//
// - startServer(): runs the real `resonance` binary on a free port, waits for GET /up,
//   captures its output, stops it with SIGTERM (SIGKILL after 5 s).
// - startAuthServer(): an in-process HTTP endpoint that signs channel authorization and
//   user authentication exactly like Laravel's Pusher broadcaster.
// - api(): calls the Pusher HTTP API with a correctly signed request.
// - RawClient: a raw `ws` Pusher-protocol client for wire-level checks.
// - wait helpers: every wait has a timeout and fails with a clear message.

import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { after, afterEach } from 'node:test';
import Pusher from 'pusher-js';
import WebSocket from 'ws';
import {
  BIN,
  DEFAULT_WAIT_MS,
  REPO_ROOT,
  ManagedProcess,
  assertBin,
  createClientTracker,
  freePort,
  hmacHex,
  makeRawClientBase,
  md5Hex,
  printServerTails,
  pusherConnectOptions,
  pusherSubscribeWith,
  readBody,
  signApiRequest,
  signChannel,
  signUser,
  signedApiRequest,
  sleep,
  spawnAndWaitUp,
  toToml,
  triggerEvent,
  uid,
  waitUntil as coreWaitUntil,
  withRetries,
  withTimeout,
} from '../../common/harness-core.js';

export { BIN, DEFAULT_WAIT_MS, REPO_ROOT, freePort, hmacHex, md5Hex, signApiRequest, signChannel, signUser, sleep, toToml, uid, withTimeout };

export const DEFAULT_APP = Object.freeze({
  id: '424242',
  key: 'js-test-key',
  secret: 'js-test-secret',
});

/** Poll `fn` until it returns a truthy value (returned), failing after `ms`. */
export function waitUntil(fn, ms = DEFAULT_WAIT_MS, label = 'condition', interval = 25) {
  return coreWaitUntil(fn, ms, label, interval, { lastValue: false });
}

// ---------------------------------------------------------------------------
// the server process

export class ServerProcess extends ManagedProcess {
  constructor({ proc, host, port, app, configPath, label }) {
    super({ proc, host, port, app, maxLines: 2000, tailLines: 60 });
    this.configPath = configPath;
    this.label = label;
  }

  /** SIGTERM, then SIGKILL after `graceMs`. Resolves with the exit info. */
  async stop(graceMs = 5000) {
    if (!this.running) return this.exitInfo;
    try {
      return await super.stop(graceMs);
    } finally {
      if (this.configPath) fs.rmSync(path.dirname(this.configPath), { recursive: true, force: true });
    }
  }
}

/**
 * Start the server.
 * opts.env     extra environment variables (override the defaults below)
 * opts.config  { server: {...}, apps: [{...}] } written to a temp TOML file and passed via --config
 * opts.app     app credentials (defaults to DEFAULT_APP)
 * opts.tls     { cert, key } PEM paths: serve https/wss (RESONANCE_TLS_CERT/KEY)
 */
export async function startServer(opts = {}) {
  const app = { ...DEFAULT_APP, ...(opts.app || {}) };
  // retries: port races and a binary that is being replaced by a rebuild
  return withRetries(() => startServerOnce(app, opts));
}

async function startServerOnce(app, opts) {
  assertBin(BIN);
  const host = '127.0.0.1';
  const port = await freePort();
  const args = ['start', '--host', host, '--port', String(port)];
  let configPath;
  if (opts.config) {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'resonance-js-'));
    configPath = path.join(dir, 'resonance.toml');
    const config = {
      server: { host, port, ...(opts.config.server || {}) },
      apps: (opts.config.apps || [{}]).map((a, i) => (i === 0 ? { id: app.id, key: app.key, secret: app.secret, ...a } : a)),
    };
    fs.writeFileSync(configPath, toToml(config));
    args.push('--config', configPath);
  }
  const env = {
    ...process.env,
    RESONANCE_HOST: host,
    RESONANCE_PORT: String(port),
    RESONANCE_APP_ID: app.id,
    RESONANCE_APP_KEY: app.key,
    RESONANCE_APP_SECRET: app.secret,
    RUST_LOG: process.env.RUST_LOG || 'info',
    NO_COLOR: '1',
    ...(opts.tls ? { RESONANCE_TLS_CERT: opts.tls.cert, RESONANCE_TLS_KEY: opts.tls.key } : {}),
    ...(opts.env || {}),
  };
  // a config's first app would otherwise be overridden by our env credentials: keep them equal
  return spawnAndWaitUp({
    bin: BIN,
    args,
    env,
    create: (proc) => {
      const server = new ServerProcess({ proc, host, port, app, configPath, label: opts.label });
      server.tls = Boolean(opts.tls);
      return server;
    },
  });
}

// ---------------------------------------------------------------------------
// auth endpoint (Laravel-style /broadcasting/auth and /broadcasting/user-auth)

const USER_NAMES = { 1: 'Alice', 2: 'Bob', 3: 'Carol', 7: 'Grace', 8: 'Heidi' };
export const userInfo = (id) => ({ name: USER_NAMES[id] || `User ${id}` });

function userFromRequest(req, url) {
  const h = req.headers['x-test-user'];
  if (h) return String(h);
  const cookie = req.headers.cookie || '';
  const m = /(?:^|;\s*)test_user=([^;]+)/.exec(cookie);
  if (m) return decodeURIComponent(m[1]);
  const q = url.searchParams.get('user');
  if (q) return q;
  return null;
}

/**
 * Starts the auth endpoint. The user is taken from header `X-Test-User`, cookie `test_user`,
 * or query `?user=`. Channels whose name contains "forbidden" are refused with 403; presence
 * channels and user sign-in need a user (else 403).
 * Presence channel_data uses a numeric user_id for numeric ids (like Laravel's integer keys).
 */
export async function startAuthServer(app = DEFAULT_APP) {
  const requests = [];
  const srv = http.createServer(async (req, res) => {
    const url = new URL(req.url, 'http://localhost');
    const body = await readBody(req);
    const form = new URLSearchParams(body);
    const user = userFromRequest(req, url);
    const record = { path: url.pathname, user, form: Object.fromEntries(form), headers: req.headers, status: 0 };
    requests.push(record);
    const reply = (status, obj) => {
      record.status = status;
      res.writeHead(status, { 'Content-Type': 'application/json', 'Access-Control-Allow-Origin': '*' });
      res.end(JSON.stringify(obj));
    };
    const socketId = form.get('socket_id');
    if (req.method !== 'POST' || !socketId) return reply(400, { message: 'bad request' });

    if (url.pathname === '/broadcasting/auth') {
      const channel = form.get('channel_name');
      if (!channel) return reply(400, { message: 'channel_name missing' });
      if (channel.includes('forbidden')) return reply(403, { message: 'forbidden' });
      if (channel.startsWith('presence-')) {
        if (!user) return reply(403, { message: 'no user' });
        const channelData = JSON.stringify({
          user_id: /^\d+$/.test(user) ? Number(user) : user,
          user_info: userInfo(user),
        });
        return reply(200, { auth: signChannel(app, socketId, channel, channelData), channel_data: channelData });
      }
      if (channel.startsWith('private-')) return reply(200, { auth: signChannel(app, socketId, channel) });
      return reply(403, { message: 'not a private channel' });
    }
    if (url.pathname === '/broadcasting/user-auth') {
      if (!user) return reply(403, { message: 'no user' });
      const userData = JSON.stringify({ id: String(user), user_info: userInfo(user) });
      return reply(200, { auth: signUser(app, socketId, userData), user_data: userData });
    }
    return reply(404, { message: 'not found' });
  });
  await new Promise((r) => srv.listen(0, '127.0.0.1', r));
  const { port } = srv.address();
  const base = `http://127.0.0.1:${port}`;
  return {
    port,
    requests,
    channelEndpoint: `${base}/broadcasting/auth`,
    userEndpoint: `${base}/broadcasting/user-auth`,
    close: () =>
      new Promise((r) => {
        srv.closeAllConnections?.();
        srv.close(() => r());
      }),
  };
}

// ---------------------------------------------------------------------------
// HTTP API

/**
 * Signed request to the HTTP API. `path` is relative to /apps/{id} (e.g. "/events") unless it
 * starts with "/apps/". Returns { status, json, text }.
 */
export async function api(server, method, apiPath, { query = {}, body, app = server.app, timestamp, tamper } = {}) {
  const urlPath = apiPath.startsWith('/apps/') ? apiPath : `/apps/${app.id}${apiPath}`;
  const { status, json, text } = await signedApiRequest(server.httpUrl, app, method, urlPath, { query, body, timestamp, tamper });
  return { status, json, text };
}

/** Trigger an event; asserts a 200 answer. */
export function trigger(server, channel, name, data, extra = {}) {
  return triggerEvent(api, server, channel, name, data, extra);
}

// ---------------------------------------------------------------------------
// pusher-js / laravel-echo clients

const clients = createClientTracker();

/** Track anything with disconnect() or close() so it is closed after the current test. */
export const track = clients.track;

export const closeAllClients = clients.closeAll;

export function pusherOptions(server, auth, { user, ...overrides } = {}) {
  const headers = user ? { 'X-Test-User': String(user) } : {};
  return {
    ...pusherConnectOptions(server),
    ...(auth
      ? {
          channelAuthorization: { endpoint: auth.channelEndpoint, transport: 'ajax', headers },
          userAuthentication: { endpoint: auth.userEndpoint, transport: 'ajax', headers },
        }
      : {}),
    ...overrides,
  };
}

/** A real pusher-js client; closed automatically after the test. */
export function pusherClient(server, auth, opts = {}) {
  const { key = server.app.key, ...rest } = opts;
  return track(new Pusher(key, pusherOptions(server, auth, rest)));
}

export async function connectedPusher(server, auth, opts = {}) {
  const p = pusherClient(server, auth, opts);
  await waitForState(p, 'connected');
  return p;
}

export function waitForState(pusher, state, ms = DEFAULT_WAIT_MS) {
  if (pusher.connection.state === state) return Promise.resolve();
  let handler;
  return withTimeout(
    new Promise((resolve) => {
      handler = ({ current }) => current === state && resolve();
      pusher.connection.bind('state_change', handler);
    }),
    ms,
    `pusher-js connection state "${state}" (is "${pusher.connection.state}")`,
  ).finally(() => pusher.connection.unbind('state_change', handler));
}

/**
 * Round trip on a pusher-js connection (pusher:ping -> pusher:pong). The server handles one
 * connection's frames in order, so everything sent before has been processed afterwards.
 */
export function pusherRoundTrip(pusher, ms = DEFAULT_WAIT_MS) {
  let handler;
  return withTimeout(
    new Promise((resolve) => {
      handler = (m) => m && m.event === 'pusher:pong' && resolve();
      pusher.connection.bind('message', handler);
      pusher.send_event('pusher:ping', {});
    }),
    ms,
    'pusher:pong after pusher:ping',
  ).finally(() => pusher.connection.unbind('message', handler));
}

/** Wait for one event on a pusher-js bindable (channel, connection, user). Resolves with [data, metadata]. */
export function waitForEvent(target, event, ms = DEFAULT_WAIT_MS, label = event) {
  let handler;
  return withTimeout(
    new Promise((resolve) => {
      handler = (...args) => resolve(args);
      target.bind(event, handler);
    }),
    ms,
    label,
  ).finally(() => target.unbind(event, handler));
}

/** Subscribe with pusher-js and wait for success; fails on pusher:subscription_error. */
export function subscribe(pusher, channelName, ms = DEFAULT_WAIT_MS) {
  return pusherSubscribeWith(pusher, channelName, ms, '', 'pusher:subscription_succeeded');
}

/** Records every occurrence of `events` on a pusher-js bindable. */
export class Recorder {
  constructor(target, events) {
    this.items = [];
    this.waiters = [];
    this.target = target;
    this.handlers = [];
    for (const ev of [].concat(events)) {
      const h = (data, metadata) => this.push({ event: ev, data, metadata });
      target.bind(ev, h);
      this.handlers.push([ev, h]);
    }
  }
  push(item) {
    this.items.push(item);
    for (const w of [...this.waiters]) w();
  }
  of(event) {
    return this.items.filter((i) => i.event === event);
  }
  /** Wait until `pred(items)` holds. */
  until(pred, ms = DEFAULT_WAIT_MS, label = 'recorded events') {
    if (pred(this.items)) return Promise.resolve(this.items);
    let w;
    return withTimeout(
      new Promise((resolve) => {
        w = () => pred(this.items) && resolve(this.items);
        this.waiters.push(w);
      }),
      ms,
      `${label} (recorded so far: ${JSON.stringify(this.items.map((i) => i.event))})`,
    ).finally(() => (this.waiters = this.waiters.filter((x) => x !== w)));
  }
  waitFor(event, ms = DEFAULT_WAIT_MS, pred = () => true) {
    return this.until((items) => items.some((i) => i.event === event && pred(i)), ms, `event ${event}`).then(
      (items) => items.find((i) => i.event === event && pred(i)),
    );
  }
  stop() {
    for (const [ev, h] of this.handlers) this.target.unbind(ev, h);
  }
}

// ---------------------------------------------------------------------------
// raw ws client

export class RawClient extends makeRawClientBase(WebSocket) {
  /**
   * Connect. Resolves once the socket is open (NOT waiting for connection_established;
   * use `established()` for that).
   */
  static async open(server, { key = server.app.key, headers = {}, autoPong = true, url } = {}) {
    const c = new RawClient();
    c.server = server;
    const ws = new WebSocket(url || server.wsUrl(key), { headers, autoPong });
    track(c);
    c._attach(ws);
    await c._awaitOpen('raw WebSocket open', { upgradeError: (status) => `HTTP ${status} on upgrade`, resolveOnClose: true });
    return c;
  }

  /** Open and wait for pusher:connection_established. */
  static async connect(server, opts = {}) {
    const c = await RawClient.open(server, opts);
    await c.established();
    return c;
  }

  async established(ms = DEFAULT_WAIT_MS) {
    const m = await this.next((m) => m.event === 'pusher:connection_established', ms, 'pusher:connection_established');
    this.socketId = m.parsed.socket_id;
    this.activityTimeout = m.parsed.activity_timeout;
    return m;
  }

  /** Mark every message received so far as consumed. */
  skipAll() {
    this.messages.forEach((_, i) => this.consumed.add(i));
  }

  /** Subscribe to a private channel, signing with the app secret. */
  subscribePrivate(channel, app = this.server.app) {
    return this.subscribeOk(channel, { auth: signChannel(app, this.socketId, channel) });
  }

  /** Subscribe to a presence channel as `userId`. */
  subscribePresence(channel, userId, info = userInfo(userId), app = this.server.app) {
    const channelData = JSON.stringify({ user_id: userId, user_info: info });
    return this.subscribeOk(channel, { auth: signChannel(app, this.socketId, channel, channelData), channel_data: channelData });
  }

  /** pusher:signin as `userId`; waits for pusher:signin_success. */
  async signin(userId, app = this.server.app) {
    const userData = JSON.stringify({ id: String(userId), user_info: userInfo(userId) });
    this.send({ event: 'pusher:signin', data: { auth: signUser(app, this.socketId, userData), user_data: userData } });
    return this.nextEvent('pusher:signin_success');
  }
}

// ---------------------------------------------------------------------------
// per-file setup

/**
 * Registers hooks: after each test, closes the clients the test opened and prints the
 * server log tail when the test failed; after the file, stops every server it started.
 */
export function useHarness() {
  const servers = [];
  const auths = [];
  const ctx = {
    servers,
    async startServer(opts) {
      const s = await startServer(opts);
      servers.push(s);
      return s;
    },
    async startAuth(app) {
      const a = await startAuthServer(app);
      auths.push(a);
      return a;
    },
  };
  afterEach((t) => {
    closeAllClients();
    printServerTails(t, servers, 40);
  });
  after(async () => {
    closeAllClients();
    await Promise.all(servers.map((s) => s.stop()));
    await Promise.all(auths.map((a) => a.close()));
  });
  return ctx;
}

export { Pusher };
