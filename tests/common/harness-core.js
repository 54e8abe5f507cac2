// Shared core of the Node test harnesses (tests/js, tests/laravel, tests/cluster).
//
// Imported by each suite's lib/harness.js as '../../common/harness-core.js'. This folder has
// no node_modules: only Node built-ins may be imported here. Whatever needs a package (`ws`,
// `pusher-js`, ...) takes it as a parameter (makeRawClientBase(WebSocket)) or stays in the
// suite's harness.
//
// - waits: sleep, withTimeout, waitUntil (every wait has a timeout and a clear message)
// - freePort, uid, Pusher signatures (signChannel, signUser, signApiRequest)
// - signedApiRequest()/triggerEvent(): signed Pusher HTTP API requests
// - ManagedProcess + spawnAndWaitUp(): the `resonance` binary on a free port, log capture,
//   readiness on GET /up, stop by pid (SIGTERM, SIGKILL after a grace period)
// - RedisServer: a private `redis-server` (killed by pid) driven through `redis-cli`
// - makeRawClientBase(WebSocket): the raw Pusher-protocol client's message bookkeeping
// - pusher-js helpers that only use the client object (subscribe, local signing)

import { spawn, execFile } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import https from 'node:https';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
export const REPO_ROOT = path.resolve(HERE, '..', '..');
export const BIN = process.env.RESONANCE_BIN || path.join(REPO_ROOT, 'target', 'release', 'resonance');

export const DEFAULT_WAIT_MS = 5000;

// ---------------------------------------------------------------------------
// waits

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Resolve with `promise` or reject after `ms` naming `label` (a string or a function giving one). */
export function withTimeout(promise, ms, label) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`Timed out after ${ms} ms waiting for ${typeof label === 'function' ? label() : label}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/**
 * Poll `fn` until it returns a truthy value (returned), failing after `ms` with `label` (string
 * or function) and the last error, or with `lastValue` also the last falsy value.
 */
export async function waitUntil(fn, ms = DEFAULT_WAIT_MS, label = 'condition', interval = 25, { lastValue = true } = {}) {
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
      const detail =
        last instanceof Error ? ` (last error: ${last.message})` : lastValue && last !== undefined ? ` (last value: ${JSON.stringify(last)})` : '';
      throw new Error(`Timed out after ${ms} ms waiting for ${typeof label === 'function' ? label() : label}${detail}`);
    }
    await sleep(interval);
  }
}

// ---------------------------------------------------------------------------
// small utilities

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
/** A unique channel-name part (letters, digits, '-' only: valid for Pusher and Laravel). */
export const uid = (prefix = 'c') => `${prefix}-${process.pid}-${++uniq}-${Math.floor(Math.random() * 1e6)}`;

/** JSON.parse, or null when `text` is not JSON. */
export function tryJson(text) {
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}

/** The process environment without the variables whose names start with one of `prefixes`. */
export function envWithout(...prefixes) {
  const env = {};
  for (const [k, v] of Object.entries(process.env)) if (!prefixes.some((p) => k.startsWith(p))) env[k] = v;
  return env;
}

/** Run `cmd args...` (execFile); resolves with stdout, rejects with stdout/stderr in the message. */
export function run(cmd, args, { timeout = 5000, input } = {}) {
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

/** The body of an incoming http request as a string. */
export function readBody(req) {
  return new Promise((resolve, reject) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (c) => (body += c));
    req.on('end', () => resolve(body));
    req.on('error', reject);
  });
}

/** GET over https trusting `ca`; resolves { status, text, headers }. */
export function httpsGet(url, ca, headers = {}) {
  return new Promise((resolve, reject) => {
    const req = https.get(url, { ca, headers, timeout: 1000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode, text: body, headers: res.headers }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
  });
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
// signatures (Pusher protocol / Laravel's pusher broadcaster)

export const hmacHex = (secret, str) => crypto.createHmac('sha256', secret).update(str).digest('hex');
export const md5Hex = (str) => crypto.createHash('md5').update(str).digest('hex');

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
// HTTP API

/** fetch with a timeout; resolves { status, json, text, headers } (json null unless JSON). */
export async function fetchJson(url, init, timeoutMs = DEFAULT_WAIT_MS) {
  const res = await fetch(url, { ...init, signal: AbortSignal.timeout(timeoutMs) });
  const text = await res.text();
  return { status: res.status, json: tryJson(text), text, headers: res.headers };
}

/**
 * Signed Pusher HTTP API request to `baseUrl` + `urlPath` (the full /apps/{id}/... path).
 * `body` is sent as JSON (strings as they are); `tamper(params)` may alter the signed query;
 * `encodePath` percent-encodes each path segment of the request URL (not the signed path).
 * Resolves { status, json, text, headers, ms }.
 */
export async function signedApiRequest(baseUrl, app, method, urlPath, { query = {}, body, timestamp, tamper, timeoutMs = DEFAULT_WAIT_MS, encodePath = false } = {}) {
  const bodyStr = body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body);
  const params = signApiRequest(app, method, urlPath, query, bodyStr, timestamp);
  if (tamper) tamper(params);
  const qs = Object.entries(params)
    .map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(v)}`)
    .join('&');
  const target = encodePath ? urlPath.split('/').map((seg) => encodeURIComponent(seg)).join('/') : urlPath;
  const t0 = Date.now();
  const res = await fetchJson(
    `${baseUrl}${target}?${qs}`,
    { method, headers: bodyStr !== undefined ? { 'Content-Type': 'application/json' } : {}, body: bodyStr },
    timeoutMs,
  );
  return { ...res, ms: Date.now() - t0 };
}

/** POST /events through `api(target, method, path, { body })`; throws unless 200. */
export async function triggerEvent(api, target, channel, name, data, extra = {}, where = '') {
  const body = {
    name,
    data: typeof data === 'string' ? data : JSON.stringify(data),
    ...(Array.isArray(channel) ? { channels: channel } : { channel }),
    ...extra,
  };
  const res = await api(target, 'POST', '/events', { body });
  if (res.status !== 200) throw new Error(`trigger ${name} on ${channel}${where} failed: HTTP ${res.status} ${res.text}`);
  return res;
}

// ---------------------------------------------------------------------------
// the resonance process

/** A spawned server: exit tracking, stdout/stderr captured as lines, stop by pid. */
export class ManagedProcess {
  constructor({ proc, host, port, app, maxLines = 3000, tailLines = 60 }) {
    this.proc = proc;
    this.host = host;
    this.port = port;
    this.app = app;
    this.maxLines = maxLines;
    this.tailLines = tailLines;
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
    if (this.lines.length > this.maxLines) this.lines.splice(0, this.lines.length - this.maxLines);
  }

  get httpUrl() {
    return `${this.tls ? 'https' : 'http'}://${this.host}:${this.port}`;
  }

  wsUrl(key = this.app.key, query = 'protocol=7&client=js&version=8.4.3&flash=false') {
    return `ws://${this.host}:${this.port}/app/${key}?${query}`;
  }

  logTail(n = this.tailLines) {
    return this.lines.slice(-n).join('\n');
  }

  get running() {
    return this.exitInfo === null;
  }

  /** Send a signal (by pid) without waiting. */
  signal(sig) {
    if (this.running) this.proc.kill(sig);
  }

  /** SIGTERM, then SIGKILL after `graceMs`. Resolves with the exit info. */
  async stop(graceMs = 5000) {
    if (!this.running) return this.exitInfo;
    this.proc.kill('SIGTERM');
    const t = setTimeout(() => this.running && this.proc.kill('SIGKILL'), graceMs);
    try {
      return await this.exited;
    } finally {
      clearTimeout(t);
    }
  }
}

/** Throws a retryable ENOENT error when the server binary is missing (e.g. during a rebuild). */
export function assertBin(bin = BIN) {
  if (!fs.existsSync(bin)) {
    const e = new Error(`server binary not found at ${bin} (set RESONANCE_BIN)`);
    e.code = 'ENOENT';
    e.retryable = true;
    throw e;
  }
}

/** Status of GET /up over plain HTTP. */
async function upStatus(server) {
  const res = await fetch(`${server.httpUrl}/up`, { signal: AbortSignal.timeout(1000) });
  await res.arrayBuffer();
  return res.status;
}

/**
 * Spawn `bin args` with `env` and wait (15 s) until GET /up answers 200. `create(proc)` wraps the
 * child (a ManagedProcess); `probe(server)` resolves the /up status. Errors worth retrying
 * (binary missing or being replaced, port taken) carry `retryable`; see withRetries().
 * `name`/`exitName`/`exitPhrase` word the error messages.
 */
export async function spawnAndWaitUp({
  bin = BIN,
  args,
  env,
  create,
  spawnFn = spawn,
  probe = upStatus,
  name = 'server',
  exitName = name,
  exitPhrase = 'exited before becoming ready',
}) {
  assertBin(bin);
  let proc;
  try {
    proc = spawnFn(bin, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (e) {
    e.retryable = e.code === 'ETXTBSY' || e.code === 'ENOENT';
    throw e;
  }
  const server = create(proc);
  const spawnError = new Promise((_, reject) =>
    proc.once('error', (e) => {
      e.retryable = e.code === 'ETXTBSY' || e.code === 'ENOENT' || e.code === 'EACCES';
      reject(e);
    }),
  );
  const earlyExit = server.exited.then((info) => {
    const log = server.logTail(40);
    const e = new Error(`${exitName} ${exitPhrase} (code ${info.code}, signal ${info.signal}):\n${log}`);
    e.retryable = /address (already )?in use|AddrInUse/i.test(log);
    throw e;
  });
  const ready = (async () => {
    const deadline = Date.now() + 15000;
    while (Date.now() < deadline && server.running) {
      try {
        if ((await probe(server)) === 200) return server;
      } catch {
        /* not listening yet */
      }
      await sleep(50);
    }
    if (!server.running) return new Promise(() => {}); // earlyExit reports it
    server.signal('SIGKILL');
    throw new Error(`${name} did not answer 200 on GET /up within 15 s:\n${server.logTail(40)}`);
  })();
  try {
    return await Promise.race([ready, earlyExit, spawnError]);
  } catch (e) {
    server.signal('SIGKILL');
    throw e;
  }
}

/** Retries `fn` on errors marked `retryable` (port races, a binary being replaced by a rebuild). */
export async function withRetries(fn) {
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

// ---------------------------------------------------------------------------
// Redis

/**
 * A private `redis-server` on `port` (no persistence), killable (SIGKILL by pid) and restartable
 * on the same port. opts.password (requirepass), opts.tmpPrefix (its --dir), opts.spawnFn,
 * opts.resetLog (clear the captured log on every start instead of keeping the last 4000 chars),
 * opts.args (more redis-server arguments, e.g. cluster mode).
 */
export class RedisServer {
  constructor(port, { password, tmpPrefix = 'resonance-redis-', spawnFn = spawn, resetLog = false, args = [] } = {}) {
    this.port = port;
    this.extraArgs = args;
    this.password = password;
    this.proc = null;
    this.spawnFn = spawnFn;
    this.resetLog = resetLog;
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), tmpPrefix));
    if (!resetLog) this.log = '';
  }

  get url() {
    return `redis://${this.password ? `:${encodeURIComponent(this.password)}@` : ''}127.0.0.1:${this.port}/0`;
  }

  get authArgs() {
    return this.password ? ['-a', this.password, '--no-auth-warning'] : [];
  }

  /** Start (or restart) redis-server on this.port; resolves once it answers PING. */
  async start() {
    const proc = this.spawnFn(
      'redis-server',
      ['--port', String(this.port), '--save', '', '--appendonly', 'no', '--bind', '127.0.0.1', '--dir', this.dir, '--loglevel', 'warning',
        ...(this.password ? ['--requirepass', this.password] : []), ...this.extraArgs],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    this.proc = proc;
    if (this.resetLog) this.log = '';
    proc.stdout.setEncoding('utf8').on('data', (d) => (this.log = (this.log + d).slice(-4000)));
    proc.stderr.setEncoding('utf8').on('data', (d) => (this.log = (this.log + d).slice(-4000)));
    this.exited = new Promise((r) => proc.once('exit', (code, signal) => r({ code, signal })));
    await waitUntil(
      async () => proc.exitCode === null && proc.signalCode === null && (await this.cli('PING')).trim() === 'PONG',
      10000,
      () => `redis-server PONG on port ${this.port} (log: ${this.log})`,
      50,
    );
    return this;
  }

  get running() {
    return !!this.proc && this.proc.exitCode === null && this.proc.signalCode === null;
  }

  /** SIGKILL (a crash) by pid and wait for the exit. */
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
    return run('redis-cli', ['-p', String(this.port), ...this.authArgs, ...args.map(String)]);
  }

  /** PUBLISH (the full Redis channel, prefix included); resolves with the receiver count. */
  async publish(redisChannel, message) {
    // large bodies go through stdin (`redis-cli -x`): argv is limited to 128 KiB per argument
    const out =
      message.length > 60000
        ? await run('redis-cli', ['-p', String(this.port), ...this.authArgs, '-x', 'PUBLISH', redisChannel], { input: message })
        : await this.cli('PUBLISH', redisChannel, message);
    const n = Number(out.trim());
    if (!Number.isInteger(n)) throw new Error(`PUBLISH answered ${JSON.stringify(out)}`);
    return n;
  }

  /** Laravel's multi-channel publish: EVAL "for i=2,#ARGV ..." 0 payload ch1 ch2 ... */
  evalPublish(message, redisChannels) {
    return this.cli('EVAL', "for i=2,#ARGV do redis.call('publish',ARGV[i],ARGV[1]) end", 0, message, ...redisChannels);
  }

  /** Number of pattern subscriptions (PUBSUB NUMPAT). */
  async numpat() {
    return Number((await this.cli('PUBSUB', 'NUMPAT')).trim());
  }
}

/** `create(port).start()` on a free port, up to 5 attempts. */
export async function startRedisWith(create) {
  let lastErr;
  for (let i = 0; i < 5; i++) {
    const r = create(await freePort());
    try {
      return await r.start();
    } catch (e) {
      lastErr = e;
      await r.stop().catch(() => {});
    }
  }
  throw lastErr;
}

// ---------------------------------------------------------------------------
// clients

/** disconnect() or close() a client, ignoring errors. */
export function closeClient(c) {
  try {
    if (typeof c.disconnect === 'function') c.disconnect();
    else if (typeof c.close === 'function') c.close();
  } catch {
    /* ignore */
  }
}

/** A set of live clients: `track(c)` adds one, `closeAll()` closes and forgets all. */
export function createClientTracker() {
  const live = new Set();
  return {
    live,
    track(client) {
      live.add(client);
      return client;
    },
    closeAll() {
      for (const c of live) closeClient(c);
      live.clear();
    },
  };
}

/**
 * Base class of a raw Pusher-protocol client over `ws` (the WebSocket class is passed in).
 * Subclasses create the socket, call `_attach(ws)` and `_awaitOpen(...)`. Hooks: `_prefix()`
 * (message prefix), `_closeText()`, `_timeoutLabel(label)`; `summary(n)`.
 */
export function makeRawClientBase(WebSocket) {
  return class RawClientBase {
    /** Record every message (parsed; `parsed` = data parsed again when it is a JSON string). */
    _attach(ws) {
      this.ws = ws;
      this.messages = [];
      this.consumed = new Set();
      this.waiters = [];
      this.texts = [];
      this.closeInfo = null;
      this.closed = new Promise((resolve) => {
        ws.on('close', (code, reason) => {
          this.closeInfo = { code, reason: reason.toString(), at: Date.now() };
          resolve(this.closeInfo);
          for (const w of [...this.waiters]) w();
        });
      });
      ws.on('message', (buf, isBinary) => {
        const text = buf.toString();
        this.texts.push(text);
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
        this.messages.push(msg);
        for (const w of [...this.waiters]) w();
      });
      ws.on('error', (e) => (this.error = e));
    }

    /** Wait for 'open'; `upgradeError(status)` words a refused upgrade; `resolveOnClose` accepts a close. */
    _awaitOpen(label, { upgradeError, resolveOnClose = false } = {}) {
      return withTimeout(
        new Promise((resolve, reject) => {
          this.ws.once('open', resolve);
          if (upgradeError) this.ws.once('unexpected-response', (_req, res) => reject(new Error(upgradeError(res.statusCode))));
          if (resolveOnClose) this.ws.once('close', resolve); // some refusals close right after the upgrade
          this.ws.once('error', reject);
        }),
        DEFAULT_WAIT_MS,
        label,
      );
    }

    _prefix() {
      return '';
    }

    _closeText() {
      return `${this.closeInfo.code} ${this.closeInfo.reason}`;
    }

    _timeoutLabel(label) {
      return `${label} (received: ${this.summary()})`;
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
              reject(new Error(`${this._prefix()}connection closed (${this._closeText()}) while waiting for ${label}; got: ${this.summary()}`));
          };
          this.waiters.push(w);
          w();
        }),
        ms,
        this._timeoutLabel(label),
      ).finally(() => (this.waiters = this.waiters.filter((x) => x !== w)));
    }

    nextEvent(event, channel, ms = DEFAULT_WAIT_MS) {
      return this.next((m) => m.event === event && (channel === undefined || m.channel === channel), ms, `${event}${channel ? ` on ${channel}` : ''}`);
    }

    /** All messages so far (consumed or not) matching pred. */
    all(pred) {
      return this.messages.filter(pred);
    }

    summary(n = 12) {
      return JSON.stringify(this.messages.slice(-n).map((m) => (m.channel ? `${m.event}@${m.channel}` : m.event)));
    }

    waitClose(ms = DEFAULT_WAIT_MS, label = 'close') {
      return withTimeout(this.closed, ms, this._timeoutLabel(label));
    }

    async ping(ms = DEFAULT_WAIT_MS) {
      this.send({ event: 'pusher:ping', data: {} });
      return this.nextEvent('pusher:pong', undefined, ms);
    }

    /** Send pusher:subscribe; resolves with the reply for this channel (success or error). */
    async subscribe(channel, extra = {}, ms = DEFAULT_WAIT_MS) {
      this.send({ event: 'pusher:subscribe', data: { channel, ...extra } });
      return this.next(
        (m) =>
          (m.channel === channel && (m.event === 'pusher_internal:subscription_succeeded' || m.event === 'pusher:subscription_error')) ||
          m.event === 'pusher:error',
        ms,
        `subscription reply for ${channel}`,
      );
    }

    async subscribeOk(channel, extra = {}, ms) {
      const r = await this.subscribe(channel, extra, ms);
      if (r.event !== 'pusher_internal:subscription_succeeded')
        throw new Error(`${this._prefix()}expected subscription_succeeded on ${channel}, got ${r.event} ${JSON.stringify(r.data)}`);
      return r;
    }

    close() {
      try {
        this.ws.terminate();
      } catch {
        /* ignore */
      }
    }
  };
}

// ---------------------------------------------------------------------------
// pusher-js (the client object is passed in; nothing here imports pusher-js)

/** Connection options of a pusher-js client for `server` (plain ws, no stats). */
export function pusherConnectOptions(server) {
  return {
    wsHost: server.host,
    wsPort: server.port,
    forceTLS: false,
    enabledTransports: ['ws'],
    disableStats: true,
    cluster: 'mt1',
  };
}

/** pusher-js channelAuthorization signing locally; presence members are `member()`. */
export function localChannelAuthorization(app, member) {
  return {
    customHandler: ({ socketId, channelName }, cb) => {
      if (channelName.startsWith('presence-')) {
        const channelData = JSON.stringify(member());
        cb(null, { auth: signChannel(app, socketId, channelName, channelData), channel_data: channelData });
      } else cb(null, { auth: signChannel(app, socketId, channelName) });
    },
  };
}

/**
 * Subscribe with pusher-js and wait for success; fails on pusher:subscription_error with
 * `${errorPrefix}subscription_error on ...`, on timeout naming `${okLabel} on ${channelName}`.
 */
export async function pusherSubscribeWith(pusher, channelName, ms, errorPrefix, okLabel) {
  const ch = pusher.subscribe(channelName);
  if (ch.subscribed) return ch;
  let ok, bad;
  await withTimeout(
    new Promise((resolve, reject) => {
      ok = () => resolve();
      bad = (err) => reject(new Error(`${errorPrefix}subscription_error on ${channelName}: ${JSON.stringify(err)}`));
      ch.bind('pusher:subscription_succeeded', ok);
      ch.bind('pusher:subscription_error', bad);
    }),
    ms,
    `${okLabel} on ${channelName}`,
  ).finally(() => {
    ch.unbind('pusher:subscription_succeeded', ok);
    ch.unbind('pusher:subscription_error', bad);
  });
  return ch;
}

// ---------------------------------------------------------------------------
// per-file hooks

/** After a failed test `t`: print the log tail of each server that `include(s)` accepts. */
export function printServerTails(t, servers, n, include = () => true) {
  if (t.passed !== false) return;
  for (const s of servers) {
    if (include(s))
      console.error(`--- server log tail (port ${s.port}${s.exitInfo ? `, exited ${JSON.stringify(s.exitInfo)}` : ''}) for "${t.name}" ---\n${s.logTail(n)}`);
  }
}
