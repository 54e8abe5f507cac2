// Test harness for the Resonance integration suite.
//
// - startServer(): runs the real `resonance` binary on a free port, waits for GET /up,
//   captures its output, stops it with SIGTERM (SIGKILL after 5 s).
// - startAuthServer(): an in-process HTTP endpoint that signs channel authorization and
//   user authentication exactly like Laravel's Pusher broadcaster.
// - api(): calls the Pusher HTTP API with a correctly signed request.
// - RawClient: a raw `ws` Pusher-protocol client for wire-level checks.
// - wait helpers: every wait has a timeout and fails with a clear message.

import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, afterEach } from 'node:test';
import Pusher from 'pusher-js';
import WebSocket from 'ws';

const HERE = path.dirname(fileURLToPath(import.meta.url));
export const REPO_ROOT = path.resolve(HERE, '..', '..', '..');
export const BIN = process.env.RESONANCE_BIN || path.join(REPO_ROOT, 'target', 'release', 'resonance');

export const DEFAULT_APP = Object.freeze({
  id: '424242',
  key: 'js-test-key',
  secret: 'js-test-secret',
});

export const DEFAULT_WAIT_MS = 5000;

// ---------------------------------------------------------------------------
// small utilities

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Resolve with `promise` or reject after `ms` with a message naming what was awaited. */
export function withTimeout(promise, ms, label) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`Timed out after ${ms} ms waiting for ${label}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Poll `fn` until it returns a truthy value (returned), failing after `ms`. */
export async function waitUntil(fn, ms = DEFAULT_WAIT_MS, label = 'condition', interval = 25) {
  const deadline = Date.now() + ms;
  let last;
  for (;;) {
    try {
      last = await fn();
      if (last) return last;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) {
      const detail = last instanceof Error ? ` (last error: ${last.message})` : '';
      throw new Error(`Timed out after ${ms} ms waiting for ${label}${detail}`);
    }
    await sleep(interval);
  }
}

export async function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

export const hmacHex = (secret, str) => crypto.createHmac('sha256', secret).update(str).digest('hex');
export const md5Hex = (str) => crypto.createHash('md5').update(str).digest('hex');

// ---------------------------------------------------------------------------
// signatures (Pusher protocol / Laravel broadcaster)

/** private: key:hmac(secret, "socket_id:channel"); presence adds ":channel_data". */
export function signChannel(app, socketId, channel, channelData) {
  const str = channelData === undefined ? `${socketId}:${channel}` : `${socketId}:${channel}:${channelData}`;
  return `${app.key}:${hmacHex(app.secret, str)}`;
}

/** user sign-in: key:hmac(secret, "socket_id::user::user_data"). */
export function signUser(app, socketId, userData) {
  return `${app.key}:${hmacHex(app.secret, `${socketId}::user::${userData}`)}`;
}

/**
 * Sign an HTTP API request. Returns the full query object (including auth_signature).
 * `query` values are strings; `body` is the exact body string (or undefined).
 */
export function signApiRequest(app, method, urlPath, query = {}, body, timestamp) {
  const params = { ...query };
  params.auth_key = app.key;
  params.auth_timestamp = String(timestamp ?? Math.floor(Date.now() / 1000));
  params.auth_version = '1.0';
  if (body !== undefined && body !== null && body !== '') params.body_md5 = md5Hex(body);
  const lowered = Object.entries(params).map(([k, v]) => [k.toLowerCase(), String(v)]);
  lowered.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  const qs = lowered.map(([k, v]) => `${k}=${v}`).join('&');
  params.auth_signature = hmacHex(app.secret, `${method.toUpperCase()}\n${urlPath}\n${qs}`);
  return params;
}

// ---------------------------------------------------------------------------
// TOML (just enough for the server config)

function tomlValue(v) {
  if (typeof v === 'string') return JSON.stringify(v);
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  if (Array.isArray(v)) return `[${v.map(tomlValue).join(', ')}]`;
  throw new Error(`unsupported TOML value ${v}`);
}

export function toToml({ server = {}, apps = [] }) {
  const lines = ['[server]'];
  for (const [k, v] of Object.entries(server)) lines.push(`${k} = ${tomlValue(v)}`);
  for (const app of apps) {
    lines.push('', '[[apps]]');
    for (const [k, v] of Object.entries(app)) lines.push(`${k} = ${tomlValue(v)}`);
  }
  return lines.join('\n') + '\n';
}

// ---------------------------------------------------------------------------
// the server process

export class ServerProcess {
  constructor({ proc, host, port, app, configPath, label }) {
    this.proc = proc;
    this.host = host;
    this.port = port;
    this.app = app;
    this.configPath = configPath;
    this.label = label;
    this.lines = [];
    this.exitInfo = null;
    this.exited = new Promise((resolve) => {
      proc.once('exit', (code, signal) => {
        this.exitInfo = { code, signal, at: Date.now() };
        resolve(this.exitInfo);
      });
    });
    const capture = (stream, name) => {
      let buf = '';
      stream.setEncoding('utf8');
      stream.on('data', (chunk) => {
        buf += chunk;
        let i;
        while ((i = buf.indexOf('\n')) >= 0) {
          this.pushLine(`[${name}] ${buf.slice(0, i)}`);
          buf = buf.slice(i + 1);
        }
      });
      stream.on('end', () => buf && this.pushLine(`[${name}] ${buf}`));
    };
    capture(proc.stdout, 'out');
    capture(proc.stderr, 'err');
  }

  pushLine(l) {
    this.lines.push(l);
    if (this.lines.length > 2000) this.lines.splice(0, this.lines.length - 2000);
  }

  get httpUrl() {
    return `http://${this.host}:${this.port}`;
  }

  wsUrl(key = this.app.key, query = 'protocol=7&client=js&version=8.4.3&flash=false') {
    return `ws://${this.host}:${this.port}/app/${key}?${query}`;
  }

  logTail(n = 60) {
    return this.lines.slice(-n).join('\n');
  }

  get running() {
    return this.exitInfo === null;
  }

  /** Send a signal without waiting. */
  signal(sig) {
    if (this.running) this.proc.kill(sig);
  }

  /** SIGTERM, then SIGKILL after `graceMs`. Resolves with the exit info. */
  async stop(graceMs = 5000) {
    if (!this.running) return this.exitInfo;
    this.proc.kill('SIGTERM');
    const t = setTimeout(() => {
      if (this.running) this.proc.kill('SIGKILL');
    }, graceMs);
    try {
      return await this.exited;
    } finally {
      clearTimeout(t);
      if (this.configPath) fs.rmSync(path.dirname(this.configPath), { recursive: true, force: true });
    }
  }
}

/**
 * Start the server.
 * opts.env     extra environment variables (override the defaults below)
 * opts.config  { server: {...}, apps: [{...}] } written to a temp TOML file and passed via --config
 * opts.app     app credentials (defaults to DEFAULT_APP)
 */
export async function startServer(opts = {}) {
  const app = { ...DEFAULT_APP, ...(opts.app || {}) };
  let lastErr;
  // retries: port races and a binary that is being replaced by a rebuild
  for (let attempt = 0; attempt < 6; attempt++) {
    try {
      return await startServerOnce(app, opts);
    } catch (e) {
      lastErr = e;
      if (!e.retryable) throw e;
      await sleep(e.code === 'ENOENT' || e.code === 'ETXTBSY' ? 3000 : 200);
    }
  }
  throw lastErr;
}

async function startServerOnce(app, opts) {
  if (!fs.existsSync(BIN)) {
    const e = new Error(`server binary not found at ${BIN} (set RESONANCE_BIN)`);
    e.code = 'ENOENT';
    e.retryable = true;
    throw e;
  }
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
    ...(opts.env || {}),
  };
  // a config's first app would otherwise be overridden by our env credentials: keep them equal
  let proc;
  try {
    proc = spawn(BIN, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (e) {
    e.retryable = e.code === 'ETXTBSY' || e.code === 'ENOENT';
    throw e;
  }
  const server = new ServerProcess({ proc, host, port, app, configPath, label: opts.label });
  const spawnError = new Promise((_, reject) =>
    proc.once('error', (e) => {
      e.retryable = e.code === 'ETXTBSY' || e.code === 'ENOENT' || e.code === 'EACCES';
      reject(e);
    }),
  );
  const earlyExit = server.exited.then((info) => {
    const log = server.logTail(40);
    const e = new Error(`server exited before becoming ready (code ${info.code}, signal ${info.signal}):\n${log}`);
    e.retryable = /address (already )?in use|AddrInUse/i.test(log);
    throw e;
  });
  const ready = (async () => {
    const deadline = Date.now() + 15000;
    while (Date.now() < deadline && server.running) {
      try {
        const res = await fetch(`${server.httpUrl}/up`, { signal: AbortSignal.timeout(1000) });
        await res.arrayBuffer();
        if (res.status === 200) return server;
      } catch {
        /* not listening yet */
      }
      await sleep(50);
    }
    if (!server.running) return new Promise(() => {}); // earlyExit reports it
    server.signal('SIGKILL');
    throw new Error(`server did not answer 200 on GET /up within 15 s:\n${server.logTail(40)}`);
  })();
  try {
    return await Promise.race([ready, earlyExit, spawnError]);
  } catch (e) {
    server.signal('SIGKILL');
    throw e;
  }
}

// ---------------------------------------------------------------------------
// auth endpoint (Laravel-style /broadcasting/auth and /broadcasting/user-auth)

const USER_NAMES = { 1: 'Alice', 2: 'Bob', 3: 'Carol', 7: 'Grace', 8: 'Heidi' };
export const userInfo = (id) => ({ name: USER_NAMES[id] || `User ${id}` });

function readBody(req) {
  return new Promise((resolve, reject) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (c) => (body += c));
    req.on('end', () => resolve(body));
    req.on('error', reject);
  });
}

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
  const bodyStr = body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body);
  const params = signApiRequest(app, method, urlPath, query, bodyStr, timestamp);
  if (tamper) tamper(params);
  const qs = Object.entries(params)
    .map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(v)}`)
    .join('&');
  const res = await fetch(`${server.httpUrl}${urlPath}?${qs}`, {
    method,
    headers: bodyStr !== undefined ? { 'Content-Type': 'application/json' } : {},
    body: bodyStr,
    signal: AbortSignal.timeout(DEFAULT_WAIT_MS),
  });
  const text = await res.text();
  let json = null;
  try {
    json = JSON.parse(text);
  } catch {
    /* not JSON */
  }
  return { status: res.status, json, text };
}

/** Trigger an event; asserts a 200 answer. */
export async function trigger(server, channel, name, data, extra = {}) {
  const body = {
    name,
    data: typeof data === 'string' ? data : JSON.stringify(data),
    ...(Array.isArray(channel) ? { channels: channel } : { channel }),
    ...extra,
  };
  const res = await api(server, 'POST', '/events', { body });
  if (res.status !== 200) throw new Error(`trigger ${name} on ${channel} failed: HTTP ${res.status} ${res.text}`);
  return res;
}

// ---------------------------------------------------------------------------
// pusher-js / laravel-echo clients

const liveClients = new Set();

/** Track anything with disconnect() or close() so it is closed after the current test. */
export function track(client) {
  liveClients.add(client);
  return client;
}

export function closeAllClients() {
  for (const c of liveClients) {
    try {
      if (typeof c.disconnect === 'function') c.disconnect();
      else if (typeof c.close === 'function') c.close();
    } catch {
      /* ignore */
    }
  }
  liveClients.clear();
}

export function pusherOptions(server, auth, { user, ...overrides } = {}) {
  const headers = user ? { 'X-Test-User': String(user) } : {};
  return {
    wsHost: server.host,
    wsPort: server.port,
    forceTLS: false,
    enabledTransports: ['ws'],
    disableStats: true,
    cluster: 'mt1',
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
export async function subscribe(pusher, channelName, ms = DEFAULT_WAIT_MS) {
  const ch = pusher.subscribe(channelName);
  if (ch.subscribed) return ch;
  let ok, bad;
  await withTimeout(
    new Promise((resolve, reject) => {
      ok = () => resolve();
      bad = (err) => reject(new Error(`subscription_error on ${channelName}: ${JSON.stringify(err)}`));
      ch.bind('pusher:subscription_succeeded', ok);
      ch.bind('pusher:subscription_error', bad);
    }),
    ms,
    `pusher:subscription_succeeded on ${channelName}`,
  ).finally(() => {
    ch.unbind('pusher:subscription_succeeded', ok);
    ch.unbind('pusher:subscription_error', bad);
  });
  return ch;
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

export class RawClient {
  /**
   * Connect. Resolves once the socket is open (NOT waiting for connection_established;
   * use `established()` for that).
   */
  static async open(server, { key = server.app.key, headers = {}, autoPong = true, url } = {}) {
    const c = new RawClient();
    c.server = server;
    c.ws = new WebSocket(url || server.wsUrl(key), { headers, autoPong });
    track(c);
    c.messages = [];
    c.consumed = new Set();
    c.waiters = [];
    c.texts = [];
    c.closeInfo = null;
    c.closed = new Promise((resolve) => {
      c.ws.on('close', (code, reason) => {
        c.closeInfo = { code, reason: reason.toString() };
        resolve(c.closeInfo);
        for (const w of [...c.waiters]) w();
      });
    });
    c.ws.on('message', (buf, isBinary) => {
      const text = buf.toString();
      c.texts.push(text);
      let msg;
      try {
        msg = JSON.parse(text);
        if (typeof msg.data === 'string') {
          try {
            msg.parsed = JSON.parse(msg.data);
          } catch {
            msg.parsed = msg.data;
          }
        } else msg.parsed = msg.data;
      } catch {
        msg = { event: '<invalid-json>', text };
      }
      msg.binary = isBinary;
      msg.at = Date.now();
      c.messages.push(msg);
      for (const w of [...c.waiters]) w();
    });
    c.ws.on('error', (e) => (c.error = e));
    await withTimeout(
      new Promise((resolve, reject) => {
        c.ws.once('open', resolve);
        c.ws.once('unexpected-response', (_req, res) => reject(new Error(`HTTP ${res.statusCode} on upgrade`)));
        c.ws.once('close', resolve); // some refusals close right after the upgrade
        c.ws.once('error', reject);
      }),
      DEFAULT_WAIT_MS,
      'raw WebSocket open',
    );
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

  send(obj) {
    this.ws.send(typeof obj === 'string' ? obj : JSON.stringify(obj));
  }

  get isOpen() {
    return this.ws.readyState === WebSocket.OPEN;
  }

  /** Next not-yet-consumed message matching `pred` (already received or future). */
  next(pred, ms = DEFAULT_WAIT_MS, label = 'message') {
    const find = () => {
      for (let i = 0; i < this.messages.length; i++) {
        if (!this.consumed.has(i) && pred(this.messages[i])) {
          this.consumed.add(i);
          return this.messages[i];
        }
      }
      return null;
    };
    const found = find();
    if (found) return Promise.resolve(found);
    let w;
    return withTimeout(
      new Promise((resolve, reject) => {
        w = () => {
          const m = find();
          if (m) resolve(m);
          else if (this.closeInfo)
            reject(new Error(`connection closed (${this.closeInfo.code} ${this.closeInfo.reason}) while waiting for ${label}; got: ${this.summary()}`));
        };
        this.waiters.push(w);
        w();
      }),
      ms,
      `${label} (received: ${this.summary()})`,
    ).finally(() => (this.waiters = this.waiters.filter((x) => x !== w)));
  }

  nextEvent(event, channel, ms = DEFAULT_WAIT_MS) {
    return this.next(
      (m) => m.event === event && (channel === undefined || m.channel === channel),
      ms,
      `${event}${channel ? ` on ${channel}` : ''}`,
    );
  }

  /** Mark every message received so far as consumed. */
  skipAll() {
    this.messages.forEach((_, i) => this.consumed.add(i));
  }

  /** All messages so far (consumed or not) matching pred. */
  all(pred) {
    return this.messages.filter(pred);
  }

  summary() {
    return JSON.stringify(this.messages.slice(-12).map((m) => (m.channel ? `${m.event}@${m.channel}` : m.event)));
  }

  waitClose(ms = DEFAULT_WAIT_MS, label = 'close') {
    return withTimeout(this.closed, ms, `${label} (received: ${this.summary()})`);
  }

  async ping(ms = DEFAULT_WAIT_MS) {
    this.send({ event: 'pusher:ping', data: {} });
    return this.nextEvent('pusher:pong', undefined, ms);
  }

  /** Send pusher:subscribe and wait for success or error for this channel. Returns the reply. */
  async subscribe(channel, extra = {}, ms = DEFAULT_WAIT_MS) {
    this.send({ event: 'pusher:subscribe', data: { channel, ...extra } });
    return this.next(
      (m) =>
        (m.channel === channel &&
          (m.event === 'pusher_internal:subscription_succeeded' || m.event === 'pusher:subscription_error')) ||
        m.event === 'pusher:error',
      ms,
      `subscription reply for ${channel}`,
    );
  }

  async subscribeOk(channel, extra = {}, ms) {
    const r = await this.subscribe(channel, extra, ms);
    if (r.event !== 'pusher_internal:subscription_succeeded')
      throw new Error(`expected subscription_succeeded on ${channel}, got ${r.event} ${JSON.stringify(r.data)}`);
    return r;
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

  close() {
    try {
      this.ws.terminate();
    } catch {
      /* ignore */
    }
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
    if (t.passed === false) {
      for (const s of servers) {
        console.error(`--- server log tail (port ${s.port}${s.exitInfo ? `, exited ${JSON.stringify(s.exitInfo)}` : ''}) for "${t.name}" ---\n${s.logTail(40)}`);
      }
    }
  });
  after(async () => {
    closeAllClients();
    await Promise.all(servers.map((s) => s.stop()));
    await Promise.all(auths.map((a) => a.close()));
  });
  return ctx;
}

let uniq = 0;
/** A unique channel-name suffix. */
export const uid = (prefix = 'c') => `${prefix}-${process.pid}-${++uniq}-${Math.floor(Math.random() * 1e6)}`;

export { Pusher };
