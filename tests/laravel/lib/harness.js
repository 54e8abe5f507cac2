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

import { spawn, execFile } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, afterEach } from 'node:test';
import Echo from 'laravel-echo';
import Pusher from 'pusher-js';
import io2 from 'sio2';
import { io as io4 } from 'sio4';
import WebSocket from 'ws';

const HERE = path.dirname(fileURLToPath(import.meta.url));
export const REPO_ROOT = path.resolve(HERE, '..', '..', '..');
export const BIN = process.env.RESONANCE_BIN || path.join(REPO_ROOT, 'target', 'release', 'resonance');

export const APP = Object.freeze({
  id: '515151',
  key: 'laravel-test-key',
  secret: 'laravel-test-secret',
});

export const DEFAULT_WAIT_MS = 5000;
/** seconds given to the server as RESONANCE_AUTH_TIMEOUT */
export const AUTH_TIMEOUT_S = 1;
/** how long the auth endpoint sleeps for channels containing "slow" */
export const SLOW_AUTH_MS = 3000;

export const LARAVEL_EVENT = 'App\\Events\\OrderShipped';

// ---------------------------------------------------------------------------
// small utilities

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export function withTimeout(promise, ms, label) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`Timed out after ${ms} ms waiting for ${label}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

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
      const detail = last instanceof Error ? ` (last error: ${last.message})` : last !== undefined ? ` (last value: ${JSON.stringify(last)})` : '';
      throw new Error(`Timed out after ${ms} ms waiting for ${typeof label === 'function' ? label() : label}${detail}`);
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

let uniq = 0;
/** A unique channel-name part (letters, digits, '-', '.' only: valid for Pusher and Laravel). */
export const uid = (prefix = 'c') => `${prefix}-${process.pid}-${++uniq}-${Math.floor(Math.random() * 1e6)}`;

export const hmacHex = (secret, str) => crypto.createHmac('sha256', secret).update(str).digest('hex');
export const md5Hex = (str) => crypto.createHash('md5').update(str).digest('hex');

/** Pusher channel signature, as Laravel's pusher broadcaster computes it. */
export function signChannel(app, socketId, channel, channelData) {
  const str = channelData === undefined ? `${socketId}:${channel}` : `${socketId}:${channel}:${channelData}`;
  return `${app.key}:${hmacHex(app.secret, str)}`;
}

function run(cmd, args, { timeout = 5000, input } = {}) {
  return new Promise((resolve, reject) => {
    const child = execFile(cmd, args, { timeout, encoding: 'utf8', maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      if (err) {
        err.message += ` (stdout: ${stdout} stderr: ${stderr})`;
        reject(err);
      } else resolve(stdout);
    });
    if (input !== undefined) child.stdin.end(input);
  });
}

// ---------------------------------------------------------------------------
// Redis

export class RedisProcess {
  constructor(port) {
    this.port = port;
    this.proc = null;
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'resonance-redis-'));
  }

  get url() {
    return `redis://127.0.0.1:${this.port}/0`;
  }

  async start() {
    const proc = spawn(
      'redis-server',
      ['--port', String(this.port), '--save', '', '--appendonly', 'no', '--bind', '127.0.0.1', '--dir', this.dir, '--loglevel', 'warning'],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    this.proc = proc;
    this.log = '';
    proc.stdout.setEncoding('utf8').on('data', (d) => (this.log = (this.log + d).slice(-4000)));
    proc.stderr.setEncoding('utf8').on('data', (d) => (this.log = (this.log + d).slice(-4000)));
    this.exited = new Promise((r) => proc.once('exit', (code, signal) => r({ code, signal })));
    await waitUntil(
      async () => proc.exitCode === null && (await this.cli('PING')).trim() === 'PONG',
      10000,
      `redis-server PONG on port ${this.port} (log: ${this.log})`,
      50,
    );
    return this;
  }

  get running() {
    return this.proc && this.proc.exitCode === null && this.proc.signalCode === null;
  }

  /** Kill (SIGKILL, like a crash) and wait for the exit. */
  async kill() {
    if (!this.running) return;
    this.proc.kill('SIGKILL');
    await withTimeout(this.exited, 5000, 'redis-server exit');
  }

  async stop() {
    await this.kill();
    fs.rmSync(this.dir, { recursive: true, force: true });
  }

  /** `redis-cli -p PORT args...`; resolves with stdout. */
  cli(...args) {
    return run('redis-cli', ['-p', String(this.port), ...args.map(String)]);
  }

  /** PUBLISH channel message (channel is the full Redis channel, prefix included). Returns receivers. */
  async publish(redisChannel, message) {
    // large bodies go through stdin (`redis-cli -x`): argv is limited to 128 KiB per argument
    const out =
      message.length > 60000
        ? await run('redis-cli', ['-p', String(this.port), '-x', 'PUBLISH', redisChannel], { input: message })
        : await this.cli('PUBLISH', redisChannel, message);
    const n = Number(out.trim());
    if (!Number.isInteger(n)) throw new Error(`PUBLISH answered ${JSON.stringify(out)}`);
    return n;
  }

  /** Laravel's multi-channel publish: EVAL "for i=2,#ARGV ..." 0 payload ch1 ch2 ... */
  async evalPublish(message, redisChannels) {
    return this.cli('EVAL', "for i=2,#ARGV do redis.call('publish',ARGV[i],ARGV[1]) end", 0, message, ...redisChannels);
  }

  /** Number of pattern subscriptions (PUBSUB NUMPAT). */
  async numpat() {
    return Number((await this.cli('PUBSUB', 'NUMPAT')).trim());
  }
}

export async function startRedis() {
  let lastErr;
  for (let i = 0; i < 5; i++) {
    const r = new RedisProcess(await freePort());
    try {
      return await r.start();
    } catch (e) {
      lastErr = e;
      await r.stop().catch(() => {});
    }
  }
  throw lastErr;
}

/** The exact body Laravel's RedisBroadcaster publishes. */
export function laravelPayload(event = LARAVEL_EVENT, data = { id: 5 }, socket = null) {
  return JSON.stringify({ event, data, socket });
}

// ---------------------------------------------------------------------------
// the server process

export class ServerProcess {
  constructor({ proc, host, port, app, label, cleanup }) {
    this.proc = proc;
    this.host = host;
    this.port = port;
    this.app = app;
    this.label = label;
    this.cleanup = cleanup;
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
    if (this.lines.length > 3000) this.lines.splice(0, this.lines.length - 3000);
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

  signal(sig) {
    if (this.running) this.proc.kill(sig);
  }

  async stop(graceMs = 5000) {
    if (this.running) {
      this.proc.kill('SIGTERM');
      const t = setTimeout(() => this.running && this.proc.kill('SIGKILL'), graceMs);
      try {
        await this.exited;
      } finally {
        clearTimeout(t);
      }
    }
    this.cleanup?.();
    return this.exitInfo;
  }

  /** GET a path on the server; resolves { status, text, json }. */
  async get(p, headers = {}) {
    const res = await fetch(`${this.httpUrl}${p}`, { headers, signal: AbortSignal.timeout(DEFAULT_WAIT_MS) });
    const text = await res.text();
    let json = null;
    try {
      json = JSON.parse(text);
    } catch {
      /* not JSON */
    }
    return { status: res.status, text, json, headers: res.headers };
  }
}

async function spawnAndWait({ args, env, host, port, app, label, cleanup }) {
  if (!fs.existsSync(BIN)) {
    const e = new Error(`server binary not found at ${BIN} (set RESONANCE_BIN)`);
    e.retryable = true;
    e.code = 'ENOENT';
    throw e;
  }
  let proc;
  try {
    proc = spawn(BIN, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (e) {
    e.retryable = e.code === 'ETXTBSY' || e.code === 'ENOENT';
    throw e;
  }
  const server = new ServerProcess({ proc, host, port, app, label, cleanup });
  const spawnError = new Promise((_, reject) =>
    proc.once('error', (e) => {
      e.retryable = e.code === 'ETXTBSY' || e.code === 'ENOENT' || e.code === 'EACCES';
      reject(e);
    }),
  );
  const earlyExit = server.exited.then((info) => {
    const log = server.logTail(40);
    const e = new Error(`server (${args.join(' ')}) exited before becoming ready (code ${info.code}, signal ${info.signal}):\n${log}`);
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
        /* not yet */
      }
      await sleep(50);
    }
    if (!server.running) return new Promise(() => {});
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

async function withRetries(fn) {
  let lastErr;
  for (let attempt = 0; attempt < 6; attempt++) {
    try {
      return await fn();
    } catch (e) {
      lastErr = e;
      if (!e.retryable) throw e;
      await sleep(e.code === 'ENOENT' || e.code === 'ETXTBSY' ? 3000 : 200);
    }
  }
  throw lastErr;
}

/** The process environment without any RESONANCE_* / LARAVEL_ECHO_SERVER_* variable. */
function cleanEnv() {
  const env = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (k.startsWith('RESONANCE_') || k.startsWith('LARAVEL_ECHO_SERVER_')) continue;
    env[k] = v;
  }
  return env;
}

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
    const port = await freePort();
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
 * Start `resonance start --echo-config FILE` with a laravel-echo-server.json built from
 * `configFor(port)` (a function receiving the chosen port) — no RESONANCE_* env.
 */
export function startEchoServer(configFor, { env: extraEnv = {}, listenPort } = {}) {
  return withRetries(async () => {
    const port = await freePort();
    const config = configFor(port);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'resonance-echo-'));
    const file = path.join(dir, 'laravel-echo-server.json');
    fs.writeFileSync(file, JSON.stringify(config, null, 2));
    const env = { ...cleanEnv(), RUST_LOG: process.env.RUST_LOG || 'info', NO_COLOR: '1', ...extraEnv };
    const realPort = listenPort ? listenPort(port) : port;
    const client = (config.clients || [])[0] || {};
    const s = await spawnAndWait({
      args: ['start', '--echo-config', file],
      env,
      host: '127.0.0.1',
      port: realPort,
      app: { id: client.appId, key: client.key },
      cleanup: () => fs.rmSync(dir, { recursive: true, force: true }),
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

function readBody(req) {
  return new Promise((resolve, reject) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (c) => (body += c));
    req.on('end', () => resolve(body));
    req.on('error', reject);
  });
}

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

/** Sign a Pusher HTTP API request; returns the query object including auth_signature. */
export function signApiRequest(app, method, urlPath, query = {}, body) {
  const params = { ...query };
  params.auth_key = app.key;
  params.auth_timestamp = String(Math.floor(Date.now() / 1000));
  params.auth_version = '1.0';
  if (body !== undefined && body !== null && body !== '') params.body_md5 = md5Hex(body);
  const lowered = Object.entries(params).map(([k, v]) => [k.toLowerCase(), String(v)]);
  lowered.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  const qs = lowered.map(([k, v]) => `${k}=${v}`).join('&');
  params.auth_signature = hmacHex(app.secret, `${method.toUpperCase()}\n${urlPath}\n${qs}`);
  return params;
}

async function fetchJson(url, init) {
  const res = await fetch(url, { ...init, signal: AbortSignal.timeout(DEFAULT_WAIT_MS) });
  const text = await res.text();
  let json = null;
  try {
    json = JSON.parse(text);
  } catch {
    /* not JSON */
  }
  return { status: res.status, json, text, headers: res.headers };
}

/** Signed Pusher API request (env-configured server). `apiPath` relative to /apps/{id}. */
export async function pusherApi(server, method, apiPath, { query = {}, body } = {}) {
  const urlPath = `/apps/${server.app.id}${apiPath}`;
  const bodyStr = body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body);
  const params = signApiRequest(server.app, method, urlPath, query, bodyStr);
  const qs = Object.entries(params).map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(v)}`).join('&');
  return fetchJson(`${server.httpUrl}${urlPath}?${qs}`, {
    method,
    headers: bodyStr !== undefined ? { 'Content-Type': 'application/json' } : {},
    body: bodyStr,
  });
}

/** laravel-echo-server style API request: key as Bearer (default) or ?auth_key=. */
export async function echoApi(server, method, apiPath, { key = server.app.key, body, asQuery = false, appId = server.app.id, rawPath } = {}) {
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

const liveClients = new Set();
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
  constructor(server, { version = 2, cookie, headers, authHeaders = {}, bearerToken, csrfToken, transports = ['websocket'], reconnection = false, host } = {}) {
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
    wsHost: server.host,
    wsPort: server.port,
    forceTLS: false,
    enabledTransports: ['ws'],
    disableStats: true,
    cluster: 'mt1',
    channelAuthorization: {
      customHandler: ({ socketId, channelName }, cb) => {
        if (channelName.startsWith('presence-')) {
          const channelData = JSON.stringify({ user_id: Number(user), user_info: userInfo(user) });
          cb(null, { auth: signChannel(app, socketId, channelName, channelData), channel_data: channelData });
        } else cb(null, { auth: signChannel(app, socketId, channelName) });
      },
    },
  });
  return track(p);
}

export async function connectedPusher(server, opts) {
  const p = pusherClient(server, opts);
  await waitUntil(() => p.connection.state === 'connected', DEFAULT_WAIT_MS, `pusher-js connected (state ${p.connection.state})`);
  return p;
}

/** Subscribe with pusher-js and wait for success. */
export async function pusherSubscribe(pusher, channelName, ms = DEFAULT_WAIT_MS) {
  const ch = pusher.subscribe(channelName);
  if (ch.subscribed) return ch;
  let ok, bad;
  await withTimeout(
    new Promise((resolve, reject) => {
      ok = () => resolve();
      bad = (err) => reject(new Error(`pusher-js subscription_error on ${channelName}: ${JSON.stringify(err)}`));
      ch.bind('pusher:subscription_succeeded', ok);
      ch.bind('pusher:subscription_error', bad);
    }),
    ms,
    `pusher-js subscription_succeeded on ${channelName}`,
  ).finally(() => {
    ch.unbind('pusher:subscription_succeeded', ok);
    ch.unbind('pusher:subscription_error', bad);
  });
  return ch;
}

/** laravel-echo with the pusher broadcaster against the server's Pusher endpoint. */
export function echoPusher(server) {
  return track(
    new Echo({
      broadcaster: 'pusher',
      key: server.app.key,
      wsHost: server.host,
      wsPort: server.port,
      forceTLS: false,
      enabledTransports: ['ws'],
      disableStats: true,
      cluster: 'mt1',
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
export class RawClient {
  static async connect(server, { key = server.app.key, headers = {} } = {}) {
    const c = new RawClient();
    c.ws = new WebSocket(server.wsUrl(key), { headers });
    track(c);
    c.messages = [];
    c.consumed = new Set();
    c.waiters = [];
    c.closeInfo = null;
    c.ws.on('close', (code, reason) => {
      c.closeInfo = { code, reason: reason.toString() };
      for (const w of [...c.waiters]) w();
    });
    c.ws.on('message', (buf) => {
      const text = buf.toString();
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
      c.messages.push(msg);
      for (const w of [...c.waiters]) w();
    });
    c.ws.on('error', (e) => (c.error = e));
    await withTimeout(
      new Promise((resolve, reject) => {
        c.ws.once('open', resolve);
        c.ws.once('error', reject);
      }),
      DEFAULT_WAIT_MS,
      'raw WebSocket open',
    );
    const est = await c.nextEvent('pusher:connection_established');
    c.socketId = est.parsed.socket_id;
    return c;
  }

  send(obj) {
    this.ws.send(typeof obj === 'string' ? obj : JSON.stringify(obj));
  }

  get isOpen() {
    return this.ws.readyState === WebSocket.OPEN;
  }

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
          else if (this.closeInfo) reject(new Error(`connection closed (${this.closeInfo.code}) while waiting for ${label}; got: ${this.summary()}`));
        };
        this.waiters.push(w);
        w();
      }),
      ms,
      `${label} (received: ${this.summary()})`,
    ).finally(() => (this.waiters = this.waiters.filter((x) => x !== w)));
  }

  nextEvent(event, channel, ms) {
    return this.next((m) => m.event === event && (channel === undefined || m.channel === channel), ms, `${event}${channel ? ` on ${channel}` : ''}`);
  }

  all(pred) {
    return this.messages.filter(pred);
  }

  summary() {
    return JSON.stringify(this.messages.slice(-10).map((m) => (m.channel ? `${m.event}@${m.channel}` : m.event)));
  }

  async ping(ms = DEFAULT_WAIT_MS) {
    this.send({ event: 'pusher:ping', data: {} });
    return this.nextEvent('pusher:pong', undefined, ms);
  }

  /** pusher:subscribe; resolves with the reply for this channel (success or error). */
  subscribe(channel, extra = {}, ms = DEFAULT_WAIT_MS) {
    this.send({ event: 'pusher:subscribe', data: { channel, ...extra } });
    return this.next(
      (m) => (m.channel === channel && (m.event === 'pusher_internal:subscription_succeeded' || m.event === 'pusher:subscription_error')) || m.event === 'pusher:error',
      ms,
      `subscription reply for ${channel}`,
    );
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
    async startAuth() {
      const a = await startLaravelAuth();
      auths.push(a);
      return a;
    },
  };
  afterEach((t) => {
    closeAllClients();
    if (t.passed === false) {
      for (const s of servers) {
        if (!s.exitInfo || Date.now() - s.exitInfo.at < 60000)
          console.error(`--- server log tail (port ${s.port}${s.exitInfo ? `, exited ${JSON.stringify(s.exitInfo)}` : ''}) for "${t.name}" ---\n${s.logTail(30)}`);
      }
    }
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
