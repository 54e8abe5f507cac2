// Harness for the real-Laravel suite: a genuine Laravel 8.83 application (Debian's
// php-laravel-framework, ../site) served by `php -S`, broadcasting through the real `redis`
// broadcaster to a private redis-server, and Resonance authorising channels through the app's
// own /broadcasting/auth (the channel callbacks of site/routes/channels.php).
//
// - startStack(): redis-server + Laravel (php -S, its own storage dir and APP_KEY) + resonance.
// - Browser: a cookie jar speaking to Laravel as a browser tab does (GET /login for the session
//   and CSRF token, POST /login, then POSTs with X-CSRF-TOKEN and X-Socket-ID).
// - Echo clients: the socket.io connector (socket.io-client 2.x / 4.x) and the pusher / reverb
//   connector (pusher-js), each carrying its browser's session cookie on the WebSocket
//   handshake, as a browser does for a same-site socket.
// Every wait has a timeout and fails with a message that says what was expected.

import { spawn, spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, afterEach, test } from 'node:test';
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
  freePort,
  printServerTails,
  signedApiRequest,
  sleep,
  spawnAndWaitUp,
  startRedisWith,
  uid,
  waitUntil,
  withRetries,
  withTimeout,
} from '../../common/harness-core.js';

export { BIN, DEFAULT_WAIT_MS, REPO_ROOT, sleep, uid, waitUntil, withTimeout };

/** php-cli (an absolute path: the spawn helper checks that the binary exists). */
export const PHP = ['/usr/bin/php', '/usr/local/bin/php'].find((p) => fs.existsSync(p)) || '/usr/bin/php';
export const SITE = path.join(REPO_ROOT, 'tests', 'laravel-app', 'site');
export const APP = Object.freeze({ id: '880001', key: 'laravel-app-key', secret: 'laravel-app-secret' });
/** Laravel 8's default Redis prefix for APP_NAME=Laravel (database.redis.options.prefix). */
export const PREFIX = 'laravel_database_';
/**
 * OrderShipped's payload as Laravel 8's redis broadcaster sends it: the event's public properties
 * plus `socket` (the X-Socket-ID of a toOthers() broadcast, else null) inside `data` too.
 */
export const order = (ownerId, orderId, socket = null) => ({ ownerId, orderId, socket });

export const USERS = Object.freeze({
  alice: { id: 1, name: 'Alice', email: 'alice@example.com' },
  bob: { id: 2, name: 'Bob', email: 'bob@example.com' },
  carol: { id: 3, name: 'Carol', email: 'carol@example.com' },
  dave: { id: 4, name: 'Dave', email: 'dave@example.com' },
});

/** Skip reason when php or Laravel is not installed (the suite then reports skips, not passes). */
export function laravelMissing() {
  const php = spawnSyncOk(PHP, ['-r', 'require "/usr/share/php/Illuminate/autoload.php"; exit(class_exists("Illuminate\\\\Foundation\\\\Application") && extension_loaded("redis") ? 0 : 1);']);
  return php ? null : 'php-cli, php-laravel-framework and php-redis are not installed (apt-get install php-cli php-laravel-framework php-redis)';
}

function spawnSyncOk(cmd, args) {
  try {
    return spawnSync(cmd, args, { stdio: 'ignore', timeout: 10000 }).status === 0;
  } catch {
    return false;
  }
}

// ---------------------------------------------------------------------------
// Laravel under php -S

export class LaravelProcess extends ManagedProcess {
  constructor({ proc, port, storage }) {
    super({ proc, host: '127.0.0.1', port, app: null, maxLines: 2000, tailLines: 40 });
    this.storage = storage;
  }

  get url() {
    return `http://127.0.0.1:${this.port}`;
  }

  /** The application's own log (storage/logs/laravel.log), for failure reports. */
  appLog(n = 40) {
    try {
      return fs.readFileSync(path.join(this.storage, 'logs', 'laravel.log'), 'utf8').split('\n').slice(-n).join('\n');
    } catch {
      return '';
    }
  }

  logTail(n) {
    return `${super.logTail(n)}\n--- laravel.log ---\n${this.appLog(n)}`;
  }

  /** php -S forks workers: signal the whole process group. */
  async stop(graceMs = 3000) {
    if (this.running) {
      try {
        process.kill(-this.proc.pid, 'SIGTERM');
      } catch {
        /* gone */
      }
      const t = setTimeout(() => {
        try {
          process.kill(-this.proc.pid, 'SIGKILL');
        } catch {
          /* gone */
        }
      }, graceMs);
      await this.exited;
      clearTimeout(t);
    }
    fs.rmSync(this.storage, { recursive: true, force: true });
    return this.exitInfo;
  }
}

/** `php artisan ...` in the site with `env`; resolves { code, stdout, stderr }. */
export function artisan(args, env = {}, { cwd = SITE, timeout = 20000 } = {}) {
  return new Promise((resolve, reject) => {
    const p = spawn(PHP, ['artisan', ...args], { cwd, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d) => (stdout += d));
    p.stderr.on('data', (d) => (stderr += d));
    const t = setTimeout(() => p.kill('SIGKILL'), timeout);
    p.on('error', reject);
    p.on('exit', (code) => {
      clearTimeout(t);
      resolve({ code, stdout, stderr });
    });
  });
}

/** A fresh storage directory (sessions, cache, logs, views, the framework's manifests). */
export function makeStorage() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'laravel-app-'));
  for (const d of ['framework/sessions', 'framework/cache/data', 'framework/views', 'logs', 'app']) fs.mkdirSync(path.join(dir, d), { recursive: true });
  return dir;
}

/** The environment a Laravel instance of this suite runs with. */
export function laravelEnv({ redis, storage, extra = {} }) {
  return {
    ...envWithout('RESONANCE_', 'APP_', 'REDIS_', 'BROADCAST_'),
    APP_NAME: 'Laravel',
    APP_ENV: 'production',
    APP_DEBUG: 'false',
    APP_KEY: `base64:${crypto.randomBytes(32).toString('base64')}`,
    APP_STORAGE: storage,
    BROADCAST_DRIVER: 'redis',
    REDIS_HOST: '127.0.0.1',
    REDIS_PORT: String(redis.port),
    RESONANCE_APP_ID: APP.id,
    RESONANCE_APP_KEY: APP.key,
    RESONANCE_APP_SECRET: APP.secret,
    ...extra,
  };
}

/** Start the site under `php -S` (4 workers) on a free port; resolves once GET /login answers. */
export function startLaravel({ redis, env: extra = {} }) {
  return withRetries(async () => {
    const port = await freePort();
    const storage = makeStorage();
    const env = { ...laravelEnv({ redis, storage, extra }), PHP_CLI_SERVER_WORKERS: '4' };
    return spawnAndWaitUp({
      bin: PHP,
      // opcache on, as under php-fpm: each worker compiles the framework once, not per request
      args: ['-d', 'opcache.enable_cli=1', '-S', `127.0.0.1:${port}`, '-t', path.join(SITE, 'public'), path.join(SITE, 'server.php')],
      env,
      spawnFn: (bin, args, opts) => spawn(bin, args, { ...opts, cwd: SITE, detached: true }),
      create: (proc) => new LaravelProcess({ proc, port, storage }),
      probe: async (s) => {
        const res = await fetch(`${s.url}/login`, { signal: AbortSignal.timeout(2000) });
        await res.arrayBuffer();
        return res.status;
      },
      name: 'Laravel (php -S)',
    });
  });
}

// ---------------------------------------------------------------------------
// resonance

export class ResonanceProcess extends ManagedProcess {}

/** resonance with Redis ingestion (Laravel's prefix) and the app's /broadcasting/auth. */
export function startResonance({ redis, laravel, env: extra = {} }) {
  return withRetries(async () => {
    const host = '127.0.0.1';
    const port = await freePort();
    const env = {
      ...envWithout('RESONANCE_', 'LARAVEL_ECHO_SERVER_'),
      RESONANCE_APP_ID: APP.id,
      RESONANCE_APP_KEY: APP.key,
      RESONANCE_APP_SECRET: APP.secret,
      RESONANCE_SOCKETIO: 'true',
      RESONANCE_REDIS_URL: redis.url,
      RESONANCE_REDIS_PREFIX: PREFIX,
      RESONANCE_AUTH_ENDPOINT: `${laravel.url}/broadcasting/auth`,
      RESONANCE_AUTH_TIMEOUT: '5',
      RUST_LOG: process.env.RUST_LOG || 'info',
      NO_COLOR: '1',
      ...extra,
    };
    return spawnAndWaitUp({
      bin: BIN,
      args: ['start', '--host', host, '--port', String(port)],
      env,
      create: (proc) => new ResonanceProcess({ proc, host, port, app: { ...APP } }),
      exitName: 'resonance',
    });
  });
}

/** Signed Pusher API request against resonance. */
export function pusherApi(server, method, apiPath, opts = {}) {
  return signedApiRequest(server.httpUrl, server.app, method, `/apps/${server.app.id}${apiPath}`, opts);
}

export async function subscriptionCount(server, channel) {
  const r = await pusherApi(server, 'GET', `/channels/${encodeURIComponent(channel)}`, { query: { info: 'subscription_count' } });
  if (r.status !== 200) throw new Error(`GET channel ${channel}: HTTP ${r.status} ${r.text}`);
  return r.json.subscription_count ?? 0;
}

/** Wait until `channel` has exactly `n` subscriptions on resonance. */
export function waitSubscriptions(server, channel, n, ms = DEFAULT_WAIT_MS) {
  let last;
  return waitUntil(
    async () => (last = await subscriptionCount(server, channel)) === n,
    ms,
    () => `subscription_count of ${channel} == ${n} (last: ${last})`,
    40,
  );
}

/** Wait until resonance has PSUBSCRIBEd Laravel's prefix (a PUBLISH reaches one receiver). */
export function waitIngestion(redis, ms = 10000) {
  let last;
  return waitUntil(
    async () => (last = await redis.publish(`${PREFIX}resonance-probe`, JSON.stringify({ event: 'probe', data: {}, socket: null }))) >= 1,
    ms,
    () => `resonance to PSUBSCRIBE ${PREFIX}* (receivers: ${last})`,
    100,
  );
}

// ---------------------------------------------------------------------------
// a browser tab's HTTP side: cookie jar, CSRF, X-Socket-ID

export class Browser {
  constructor(laravel, label = 'browser') {
    this.laravel = laravel;
    this.label = label;
    this.cookies = new Map();
    this.csrf = null;
    this.user = null;
  }

  /** The Cookie header this browser sends to the site (and to a same-site WebSocket). */
  get cookie() {
    return [...this.cookies].map(([k, v]) => `${k}=${v}`).join('; ');
  }

  async request(method, p, { form, headers = {} } = {}) {
    const h = { Accept: 'application/json', ...headers };
    if (this.cookies.size) h.Cookie = this.cookie;
    let body;
    if (form) {
      body = new URLSearchParams(form).toString();
      h['Content-Type'] = 'application/x-www-form-urlencoded';
    }
    const res = await fetch(`${this.laravel.url}${p}`, { method, headers: h, body, redirect: 'manual', signal: AbortSignal.timeout(DEFAULT_WAIT_MS) });
    for (const c of res.headers.getSetCookie()) {
      const [pair] = c.split(';');
      const i = pair.indexOf('=');
      const name = pair.slice(0, i).trim();
      const value = pair.slice(i + 1).trim();
      if (/expires=Thu, 01-Jan-1970/i.test(c) || value === 'deleted') this.cookies.delete(name);
      else this.cookies.set(name, value);
    }
    const text = await res.text();
    let json = null;
    try {
      json = JSON.parse(text);
    } catch {
      /* not JSON */
    }
    return { status: res.status, text, json, headers: res.headers };
  }

  /** GET /login (session + CSRF token), then POST /login with the token. */
  async login(user) {
    const page = await this.request('GET', '/login');
    if (page.status !== 200) throw new Error(`GET /login: HTTP ${page.status} ${page.text.slice(0, 300)}`);
    this.csrf = page.json.csrf_token;
    const r = await this.request('POST', '/login', { form: { _token: this.csrf, email: user.email, password: 'password' } });
    if (r.status !== 200) throw new Error(`POST /login as ${user.email}: HTTP ${r.status} ${r.text.slice(0, 300)}`);
    this.csrf = r.json.csrf_token;
    this.user = r.json.user;
    return this;
  }

  /** A guest: the session and CSRF token, nobody signed in. */
  async visit() {
    const page = await this.request('GET', '/login');
    this.csrf = page.json.csrf_token;
    return this;
  }

  /** An AJAX POST as Echo's interceptors send it: X-CSRF-TOKEN, X-Socket-ID, X-Requested-With. */
  post(p, form = {}, { socketId, csrf = true } = {}) {
    const headers = { 'X-Requested-With': 'XMLHttpRequest' };
    if (csrf && this.csrf) headers['X-CSRF-TOKEN'] = this.csrf;
    if (socketId) headers['X-Socket-ID'] = socketId;
    return this.request('POST', p, { form, headers });
  }

  /** POST and require a 2xx. */
  async ok(p, form, opts) {
    const r = await this.post(p, form, opts);
    if (r.status < 200 || r.status > 299) throw new Error(`${this.label} POST ${p}: HTTP ${r.status} ${r.text.slice(0, 300)}`);
    return r;
  }
}

// ---------------------------------------------------------------------------
// Echo clients

export const { track, closeAll: closeAllClients } = createClientTracker();

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
      `${label} (call #${n}; calls so far: ${JSON.stringify(calls).slice(0, 800)})`,
    ).finally(() => wakers.delete(w));
  };
  return { cb, calls, nth };
}

const IO = { 2: io2, 4: io4 };

/**
 * laravel-echo's socket.io connector for `browser` (its cookie on the handshake, its CSRF
 * token as Echo reads it from the page's meta tag). `frames` records every event packet.
 */
export class SioEcho {
  constructor(server, browser, { version = 4 } = {}) {
    this.version = version;
    this.frames = [];
    this.waiters = new Set();
    const opts = {
      broadcaster: 'socket.io',
      host: server.httpUrl,
      client: IO[version],
      auth: { headers: {} },
      userAuthentication: { endpoint: '/broadcasting/user-auth', headers: {} },
      forceNew: true,
      reconnection: false,
      timeout: 5000,
      transports: ['websocket'],
      withoutInterceptors: true,
    };
    if (browser?.cookies.size) opts.extraHeaders = { Cookie: browser.cookie };
    if (browser?.csrf) opts.csrfToken = browser.csrf;
    this.echo = track(new Echo(opts));
    this.socket = this.echo.connector.socket;
    const orig = this.socket.onevent;
    const self = this;
    this.socket.onevent = function (packet) {
      self.frames.push(packet.data || []);
      for (const w of [...self.waiters]) w();
      return orig.call(this, packet);
    };
  }

  static async connect(server, browser, opts) {
    const c = new SioEcho(server, browser, opts);
    await waitUntil(() => c.socket.connected && c.echo.socketId(), DEFAULT_WAIT_MS, `socket.io ${c.version}.x connected`);
    return c;
  }

  get id() {
    return this.echo.socketId();
  }

  /** Wait for an event frame [event, channel, ...] matching pred. */
  next(pred, label, ms = DEFAULT_WAIT_MS) {
    const find = () => this.frames.find(pred);
    const f = find();
    if (f) return Promise.resolve(f);
    let w;
    return withTimeout(
      new Promise((resolve) => {
        w = () => {
          const m = find();
          if (m) resolve(m);
        };
        this.waiters.add(w);
      }),
      ms,
      `socket.io ${this.version}.x ${label} (frames: ${JSON.stringify(this.frames.slice(-8)).slice(0, 1000)})`,
    ).finally(() => this.waiters.delete(w));
  }

  subscriptionError(channel) {
    return this.next((a) => a[0] === 'subscription_error' && a[1] === channel, `subscription_error on ${channel}`);
  }
}

// pusher-js in Node opens its WebSocket through Runtime.createWebSocket(url), which cannot
// carry headers. A browser sends the site's cookies on a same-site WebSocket handshake; here
// the next pusher client's cookie is handed to the socket it opens (clients are connected one
// at a time, see PusherEcho.connect).
let handshakeCookie = null;
Pusher.Runtime.createWebSocket = (url) => new WebSocket(url, { headers: handshakeCookie ? { Cookie: handshakeCookie } : {} });
let connectQueue = Promise.resolve();

/**
 * laravel-echo's pusher connector (`broadcaster` 'pusher' or 'reverb') for `browser`.
 * `auth` chooses who authorises private/presence channels:
 *   'browser' — the page asks the app's /broadcasting/auth itself (cookie, X-CSRF-TOKEN,
 *               X-Socket-ID), as Echo does by default. Laravel's redis broadcaster signs
 *               nothing: it answers `true` or {"channel_data": {...}} (an object, which pusher-js
 *               would JSON.parse and fail on), so the handler passes on no `auth` and presence
 *               `channel_data` as a string — the recipe of the README — and Resonance asks the
 *               app again itself;
 *   'server'  — the subscribe carries no auth at all (presence: pusher-js insists on a
 *               channel_data, so it sends `claim`, any identity); Resonance asks the app with
 *               the WebSocket handshake's cookie and uses the app's answer, never the claim.
 */
export class PusherEcho {
  static async connect(server, browser, { broadcaster = 'reverb', auth = 'server', claim = { user_id: 1, user_info: { id: 1, name: 'Alice' } } } = {}) {
    const c = new PusherEcho();
    c.authCalls = [];
    const customHandler = async ({ socketId, channelName }, cb) => {
      if (auth === 'server') return cb(null, channelName.startsWith('presence-') ? { channel_data: JSON.stringify(claim) } : {});
      try {
        const r = await browser.request('POST', '/broadcasting/auth', {
          form: { socket_id: socketId, channel_name: channelName },
          headers: { 'X-CSRF-TOKEN': browser.csrf || '', 'X-Socket-ID': socketId, 'X-Requested-With': 'XMLHttpRequest' },
        });
        c.authCalls.push({ channelName, status: r.status, body: r.json });
        if (r.status !== 200) return cb(new Error(`auth ${r.status}`), null);
        return cb(null, r.json && r.json.channel_data ? { channel_data: JSON.stringify(r.json.channel_data) } : {});
      } catch (e) {
        return cb(e, null);
      }
    };
    const run = async () => {
      handshakeCookie = browser?.cookies.size ? browser.cookie : null;
      c.echo = track(
        new Echo({
          broadcaster,
          key: server.app.key,
          wsHost: server.host,
          wsPort: server.port,
          wssPort: server.port,
          forceTLS: false,
          enabledTransports: ['ws'],
          disableStats: true,
          cluster: 'mt1',
          auth: { headers: {} },
          userAuthentication: { endpoint: '/broadcasting/user-auth', headers: {} },
          channelAuthorization: { customHandler },
          withoutInterceptors: true,
          Pusher,
        }),
      );
      c.pusher = c.echo.connector.pusher;
      await waitUntil(() => c.pusher.connection.state === 'connected', DEFAULT_WAIT_MS, `pusher-js (${broadcaster}) connected (state ${c.pusher.connection.state})`);
    };
    const p = connectQueue.then(run);
    connectQueue = p.catch(() => {});
    await p;
    return c;
  }

  get id() {
    return this.echo.socketId();
  }

  /** Resolves when `channel` (full name) is subscribed; rejects with its subscription_error. */
  subscribed(channel, ms = DEFAULT_WAIT_MS) {
    const ch = this.pusher.channel(channel) || this.pusher.subscribe(channel);
    if (ch.subscribed) return Promise.resolve(ch);
    let ok;
    let bad;
    return withTimeout(
      new Promise((resolve, reject) => {
        ok = () => resolve(ch);
        bad = (err) => reject(Object.assign(new Error(`subscription_error on ${channel}: ${JSON.stringify(err)}`), { status: err?.status }));
        ch.bind('pusher:subscription_succeeded', ok);
        ch.bind('pusher:subscription_error', bad);
      }),
      ms,
      `pusher-js subscription_succeeded on ${channel}`,
    ).finally(() => {
      ch.unbind('pusher:subscription_succeeded', ok);
      ch.unbind('pusher:subscription_error', bad);
    });
  }

  /** Resolves with the subscription_error of `channel`; fails if it subscribes. */
  refused(channel, ms = DEFAULT_WAIT_MS) {
    return this.subscribed(channel, ms).then(
      () => {
        throw new Error(`${channel} was subscribed; a refusal was expected`);
      },
      (e) => e,
    );
  }
}

// ---------------------------------------------------------------------------
// per-file setup

/**
 * Per test file: one redis-server, one Laravel, one resonance (started by `ctx.start()`),
 * stopped at the end; clients closed after each test; log tails printed for failed tests.
 */
export function useStack(opts = {}) {
  const procs = [];
  let redis = null;
  let started = null;
  const skip = laravelMissing();
  const ctx = {
    skip,
    /** Start once (opts.resonance false: Redis and Laravel only); later calls share it. */
    ready() {
      if (!started) started = start();
      return started;
    },
    /**
     * A test that needs the stack: skipped without php/Laravel; a failed start fails the test
     * (a before() hook failure would only mark the tests skipped).
     */
    test(name, fn) {
      return test(name, { skip: skip || false }, async (t) => {
        await ctx.ready();
        return fn(t);
      });
    },
    /** Keep `p` (anything with stop()) until the end of the file. */
    own(p) {
      procs.push(p);
      return p;
    },
  };
  async function start() {
    const { laravelEnv: lenv, resonanceEnv, resonance = true, prepare } = opts;
    if (prepare) await prepare(ctx);
    redis = await startRedisWith((port) => new RedisServer(port, { resetLog: true }));
    const laravel = await startLaravel({ redis, env: typeof lenv === 'function' ? lenv() : lenv });
    procs.push(laravel);
    Object.assign(ctx, { redis, laravel });
    if (resonance) {
      const server = await startResonance({ redis, laravel, env: resonanceEnv });
      procs.push(server);
      await waitIngestion(redis);
      ctx.server = server;
    }
    return ctx;
  }
  afterEach((t) => {
    closeAllClients();
    printServerTails(t, procs.filter((p) => p.logTail), 30);
  });
  after(async () => {
    closeAllClients();
    await Promise.all(procs.map((p) => p.stop()));
    if (redis) await redis.stop();
  });
  return ctx;
}

export { Echo, Pusher };
