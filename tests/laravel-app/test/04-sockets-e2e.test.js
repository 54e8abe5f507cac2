// The README's Laravel chat, end to end: Resonance serves /chat-rooms/{id} from the
// [[routes]] that `php artisan resonance:routes` prints, posts every event to the package's
// endpoint in the real Laravel app, and App\Sockets\ChatSocket answers with the user of the
// browser's Laravel session. Plus Socket:: from a controller through Resonance's signed socket
// API, Resonance's webhooks → MemberRemoved → the user marked offline, and the chat page in
// headless Chromium.
//
// Gated on the server: a resonance binary without app handlers ([[routes]] with `handler`) or
// without webhooks ([[apps.webhooks]]) refuses those keys at start; the tests that need them
// are then skipped and say why.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import WebSocket from 'ws';
import {
  APP, BIN, Browser, DEFAULT_WAIT_MS, PREFIX, SioEcho, USERS, artisan, laravelEnv, startLaravel, useStack, waitUntil, withTimeout,
} from '../lib/harness.js';
import { ManagedProcess, RedisServer, envWithout, freePort, spawnAndWaitUp, startRedisWith, withRetries } from '../../common/harness-core.js';

const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';

// ---------------------------------------------------------------------------
// the stack: Redis, Laravel (knowing Resonance's URL), Resonance from a TOML file

let redis;
let laravel;
let server;
let features = null; // { handlers: string|null, webhooks: string|null } — null when supported, else why not

function appToml({ withWebhooks }) {
  const lines = [
    '[[apps]]',
    `id = "${APP.id}"`,
    `key = "${APP.key}"`,
    `secret = "${APP.secret}"`,
    `redis_url = "${redis.url}"`,
    `redis_prefix = "${PREFIX}"`,
    `auth_endpoint = "${laravel.url}/broadcasting/auth"`,
    'socketio = true',
  ];
  if (withWebhooks) {
    lines.push('', '[[apps.webhooks]]', `url = "${laravel.url}/resonance/webhooks"`, 'event_types = ["member_added", "member_removed"]');
  }
  return `${lines.join('\n')}\n`;
}

class Resonance extends ManagedProcess {
  async stop(graceMs) {
    await super.stop(graceMs);
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

/** Start resonance on `port` with `toml`; resolves the process or rejects with its log. */
function startResonanceToml(port, toml) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'resonance-laravel-e2e-'));
  const file = path.join(dir, 'resonance.toml');
  fs.writeFileSync(file, `[server]\nhost = "127.0.0.1"\nport = ${port}\n\n${toml}`);
  return spawnAndWaitUp({
    bin: BIN,
    args: ['start', '--config', file],
    env: { ...envWithout('RESONANCE_', 'LARAVEL_ECHO_SERVER_'), RUST_LOG: process.env.RUST_LOG || 'info', NO_COLOR: '1' },
    create: (proc) => Object.assign(new Resonance({ proc, host: '127.0.0.1', port, app: { ...APP } }), { dir, configText: fs.readFileSync(file, 'utf8') }),
    exitName: 'resonance',
  });
}

/** Starts a throwaway resonance with `toml`: null if it starts, else the reason it refused. */
async function refusal(toml) {
  try {
    const s = await startResonanceToml(await freePort(), toml);
    await s.stop();
    return null;
  } catch (e) {
    const lines = String(e.message).split('\n');
    return (lines.find((l) => /unknown (field|variant|key)/i.test(l)) || lines.find((l) => /error/i.test(l)) || lines[0]).replace(/^\[err\]\s*/, '').trim().slice(0, 300);
  }
}

const h = useStack({ resonance: false });
let resonancePort;

async function ready() {
  if (features) return;
  resonancePort = await freePort();
  redis = h.own(await startRedisWith((port) => new RedisServer(port, { resetLog: true })));
  laravel = h.own(await startLaravel({ redis, env: { RESONANCE_API_URL: `http://127.0.0.1:${resonancePort}` } }));
  const routes = await artisan(['resonance:routes', `--url=${laravel.url}`], laravelEnv({ redis, storage: laravel.storage }));
  assert.equal(routes.code, 0, `php artisan resonance:routes: ${routes.stdout}${routes.stderr}`);
  assert.match(routes.stdout, /\[\[routes\]\]\npath = "\/chat-rooms\/\{id\}"/);
  const found = {
    handlers: await refusal(`${appToml({ withWebhooks: false })}\n${routes.stdout}`),
    webhooks: await refusal(appToml({ withWebhooks: true })),
  };
  let toml = appToml({ withWebhooks: !found.webhooks });
  if (!found.handlers) toml += `\n${routes.stdout}`;
  server = h.own(await withRetries(() => startResonanceToml(resonancePort, toml)));
  features = found;
}

/** A test needing `feature` ('handlers' | 'webhooks'); skipped (saying why) without it. */
function featureTest(name, feature, fn) {
  return test(name, { skip: h.skip || false }, async (t) => {
    await ready();
    if (features[feature]) {
      t.skip(`this resonance has no ${feature === 'handlers' ? 'app handlers ([[routes]] handler)' : 'webhooks ([[apps.webhooks]])'}: ${features[feature]}`);
      return;
    }
    return fn(t);
  });
}

// ---------------------------------------------------------------------------
// a WebSocket client of the chat route, with a browser's cookie

class ChatClient {
  static connect(browser, room) {
    return new Promise((resolve, reject) => {
      const c = new ChatClient();
      c.messages = [];
      c.waiters = new Set();
      const headers = browser?.cookies.size ? { Cookie: browser.cookie } : {};
      c.ws = new WebSocket(`ws://127.0.0.1:${resonancePort}/chat-rooms/${room}`, { headers, origin: laravel.url });
      c.ws.on('message', (d) => {
        c.messages.push(JSON.parse(String(d)));
        for (const w of [...c.waiters]) w();
      });
      c.closed = new Promise((r) => c.ws.on('close', (code, reason) => r({ code, reason: String(reason) })));
      c.ws.on('open', () => resolve(c));
      c.ws.on('unexpected-response', (req, res) => reject(Object.assign(new Error(`upgrade refused: HTTP ${res.statusCode}`), { status: res.statusCode })));
      c.ws.on('error', (e) => reject(e));
      clients.add(c);
    });
  }

  next(pred, label, ms = DEFAULT_WAIT_MS) {
    let w;
    return withTimeout(
      new Promise((resolve) => {
        w = () => {
          const i = this.messages.findIndex(pred);
          if (i >= 0) resolve(this.messages.splice(i, 1)[0]);
        };
        this.waiters.add(w);
        w();
      }),
      ms,
      `${label} (messages: ${JSON.stringify(this.messages)})`,
    ).finally(() => this.waiters.delete(w));
  }

  type(type) {
    return this.next((m) => m.type === type, `a "${type}" message`);
  }
}
const clients = new Set();
test.afterEach(() => {
  for (const c of clients) c.ws.terminate();
  clients.clear();
});

// ---------------------------------------------------------------------------

featureTest('chat: ChatSocket greets the session user, broadcasts to the room except the sender, says who left', 'handlers', async () => {
  const a = await new Browser(laravel, 'alice').login(USERS.alice);
  const b = await new Browser(laravel, 'bob').login(USERS.bob);
  const alice = await ChatClient.connect(a, '7');
  const welcome = await alice.type('welcome');
  assert.deepEqual({ ...welcome, socket: typeof welcome.socket }, { type: 'welcome', user: 'Alice', room: '7', socket: 'string' });
  const bob = await ChatClient.connect(b, '7');
  assert.equal((await bob.type('welcome')).user, 'Bob');
  assert.deepEqual(await alice.type('joined'), { type: 'joined', user: 'Bob' });
  bob.ws.send('Hello from Bob');
  assert.deepEqual(await alice.type('message'), { type: 'message', user: 'Bob', text: 'Hello from Bob' });
  // "sent" is answered after the broadcast: had Bob got his own line, it would be here first
  assert.deepEqual(await bob.type('sent'), { type: 'sent', text: 'Hello from Bob' });
  assert.deepEqual(bob.messages, [], 'the sender is left out of the broadcast');
  // another room hears nothing: a sentinel through the same room path arrives alone
  const carol = await ChatClient.connect(await new Browser(laravel, 'carol').login(USERS.carol), '8');
  await carol.type('welcome');
  bob.ws.send('/quit');
  assert.deepEqual(await bob.closed, { code: 4000, reason: 'bye' });
  assert.deepEqual(await alice.type('left'), { type: 'left', user: 'Bob' });
  carol.ws.send('sentinel');
  await carol.type('sent');
  assert.deepEqual(carol.messages, [], 'room 8 got nothing of room 7');
});

featureTest('chat: a guest is refused at the upgrade (401 from onOpen), a forged cookie too', 'handlers', async () => {
  const guest = await new Browser(laravel, 'guest').visit();
  await assert.rejects(ChatClient.connect(guest, '7'), (e) => e.status === 401);
  await assert.rejects(ChatClient.connect(null, '7'), (e) => e.status === 401);
  const a = await new Browser(laravel, 'alice').login(USERS.alice);
  a.cookies.set('laravel_session', `${a.cookies.get('laravel_session').slice(0, -6)}AAAAAA`);
  await assert.rejects(ChatClient.connect(a, '7'), (e) => e.status === 401);
});

featureTest('Socket:: from a controller reaches sockets through the signed API: broadcast (except), toUser, emit, join, close', 'handlers', async () => {
  const a = await new Browser(laravel, 'alice').login(USERS.alice);
  const b = await new Browser(laravel, 'bob').login(USERS.bob);
  const alice = await ChatClient.connect(a, '11');
  const aliceId = (await alice.type('welcome')).socket;
  const bob = await ChatClient.connect(b, '11');
  const bobId = (await bob.type('welcome')).socket;
  await alice.type('joined');

  await a.ok('/sockets/broadcast', { room: 'chat-rooms.11', data: JSON.stringify({ type: 'notice', n: 1 }), except: aliceId });
  assert.deepEqual(await bob.type('notice'), { type: 'notice', n: 1 });
  await a.ok('/sockets/to-user', { user_id: '1', data: JSON.stringify({ type: 'notice', n: 2 }) });
  assert.deepEqual(await alice.type('notice'), { type: 'notice', n: 2 }, 'toUser: the broadcast before it excluded Alice');
  await a.ok('/sockets/emit', { socket_id: bobId, data: JSON.stringify({ type: 'direct' }) });
  assert.deepEqual(await bob.type('direct'), { type: 'direct' });
  await a.ok('/sockets/join', { socket_id: bobId, room: 'vip' });
  await a.ok('/sockets/broadcast', { room: 'vip', data: JSON.stringify({ type: 'vip' }) });
  assert.deepEqual(await bob.type('vip'), { type: 'vip' });
  await a.ok('/sockets/close', { socket_id: bobId, code: '4001', reason: 'kicked' });
  assert.deepEqual(await bob.closed, { code: 4001, reason: 'kicked' });
  assert.deepEqual(await alice.type('left'), { type: 'left', user: 'Bob' });
  assert.deepEqual(alice.messages, [], 'Alice got neither the excluded broadcast nor the vip one');
  const gone = await a.post('/sockets/emit', { socket_id: bobId, data: '"late"' });
  assert.equal(gone.status, 500, 'an unknown socket is an error the app sees (ResonanceApiException)');
});

featureTest('webhooks: leaving a presence channel → member_removed → MemberRemoved listener marks the user offline', 'webhooks', async () => {
  const online = async () => (await (await fetch(`${laravel.url}/users/4/online`)).json()).online;
  assert.equal(await online(), false);
  const d = await new Browser(laravel, 'dave').login(USERS.dave);
  const sio = await SioEcho.connect(server, d, { version: 4 });
  sio.echo.join('chat.lobby');
  await waitUntil(online, 10000, 'member_added webhook → Dave online');
  sio.echo.disconnect();
  // member_removed is held ~3 s by the server (a reload sends nothing), then delivered
  await waitUntil(async () => !(await online()), 15000, 'member_removed webhook → Dave offline');
});

featureTest('the chat page in headless Chromium: two signed-in people, one types, the other reads', 'handlers', async (t) => {
  if (!fs.existsSync(CHROMIUM)) {
    t.skip(`${CHROMIUM} not installed (apt-get install chromium)`);
    return;
  }
  const { chromium } = await import('playwright-core');
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--disable-quic'],
  });
  try {
    const pages = {};
    for (const [who, user] of [['alice', USERS.alice], ['bob', USERS.bob]]) {
      // separate contexts: separate cookie jars, as two people on two machines
      const context = await browser.newContext({ viewport: { width: 640, height: 420 } });
      const token = (await (await context.request.get(`${laravel.url}/login`)).json()).csrf_token;
      const login = await context.request.post(`${laravel.url}/login`, { form: { _token: token, email: user.email, password: 'password' }, headers: { Accept: 'application/json' } });
      assert.equal(login.status(), 200, `${who} login`);
      const page = await context.newPage();
      await page.goto(`${laravel.url}/chat/42`);
      await page.locator('#status', { hasText: 'connected' }).waitFor({ timeout: 10000 });
      pages[who] = page;
    }
    await pages.alice.locator('#log li', { hasText: 'Bob joined' }).waitFor({ timeout: 10000 });
    await pages.alice.fill('#text', 'Hello from Alice');
    await pages.alice.click('#send');
    await pages.bob.locator('#log li', { hasText: 'Alice: Hello from Alice' }).waitFor({ timeout: 10000 });
    await pages.alice.locator('#log li.mine', { hasText: 'me: Hello from Alice' }).waitFor({ timeout: 10000 });
    await pages.bob.fill('#text', 'Hi Alice!');
    await pages.bob.press('#text', 'Enter');
    await pages.alice.locator('#log li', { hasText: 'Bob: Hi Alice!' }).waitFor({ timeout: 10000 });
    assert.equal(await pages.alice.locator('#log li', { hasText: 'Alice: Hello from Alice' }).count(), 0, 'Alice never got her own line back');
    const shot = path.join(process.env.SCREENSHOT_DIR || os.tmpdir(), 'laravel-chat.png');
    await pages.bob.screenshot({ path: shot });
    console.log(`screenshot: ${shot}`);
  } finally {
    await browser.close();
  }
});
