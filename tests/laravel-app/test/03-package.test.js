// The Laravel package (laravel/, resonance/laravel) inside the real app, over real HTTP:
// - the handler endpoint, called as Resonance calls it (signed JSON, the browser's cookie);
// - Socket:: from a controller → Resonance's signed socket API. The API is played by a small
//   HTTP server here that checks each request with its own (JavaScript) implementation of the
//   Pusher signature: the real endpoints belong to the handlers feature (see 04-*.test.js);
// - Pusher-format webhooks → Laravel events → the MemberRemoved listener marks a user offline.
import assert from 'node:assert/strict';
import http from 'node:http';
import crypto from 'node:crypto';
import { useStack, Browser, USERS, APP, DEFAULT_WAIT_MS, withTimeout } from '../lib/harness.js';

let laravel;
let api;
const h = useStack({
  resonance: false,
  prepare: async (ctx) => {
    api = ctx.own(await startApiStandIn());
  },
  laravelEnv: () => ({ RESONANCE_API_URL: api.url }),
});
const stackTest = (name, fn) =>
  h.test(name, async () => {
    ({ laravel } = h);
    return fn();
  });

const hmac = (body) => crypto.createHmac('sha256', APP.secret).update(body).digest('hex');
const md5 = (s) => crypto.createHash('md5').update(s).digest('hex');

/** Resonance's socket API as the contract describes it, recording verified calls. */
async function startApiStandIn() {
  const calls = [];
  const waiters = new Set();
  const srv = http.createServer((req, res) => {
    let body = '';
    req.on('data', (d) => (body += d));
    req.on('end', () => {
      const url = new URL(req.url, 'http://x');
      const q = Object.fromEntries(url.searchParams);
      const signed = Object.entries(q)
        .filter(([k]) => k !== 'auth_signature')
        .sort(([a], [b]) => (a < b ? -1 : 1))
        .map(([k, v]) => `${k}=${v}`)
        .join('&');
      const rawPath = req.url.split('?')[0];
      const expected = crypto.createHmac('sha256', APP.secret).update(`${req.method}\n${rawPath}\n${signed}`).digest('hex');
      const problems = [];
      if (q.auth_key !== APP.key) problems.push('auth_key');
      if (q.auth_version !== '1.0') problems.push('auth_version');
      if (Math.abs(Number(q.auth_timestamp) - Date.now() / 1000) > 600) problems.push('auth_timestamp');
      if (q.body_md5 !== md5(body)) problems.push('body_md5');
      if (q.auth_signature !== expected) problems.push('auth_signature');
      if (req.headers['content-type'] !== 'application/json') problems.push('content-type');
      const call = { method: req.method, path: rawPath, body: JSON.parse(body || 'null'), problems };
      calls.push(call);
      for (const w of [...waiters]) w();
      if (problems.length) {
        res.writeHead(401, { 'Content-Type': 'application/json' });
        return res.end(JSON.stringify({ error: `bad ${problems.join(', ')}` }));
      }
      if (rawPath.includes('/sockets/gone.1/')) {
        res.writeHead(404, { 'Content-Type': 'application/json' });
        return res.end(JSON.stringify({ error: 'unknown socket' }));
      }
      res.writeHead(200, { 'Content-Type': 'application/json' });
      res.end('{}');
    });
  });
  await new Promise((r) => srv.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${srv.address().port}`,
    calls,
    stop: () => new Promise((r) => srv.close(() => r())),
  };
}

/** POST a handler call to the package's endpoint as Resonance does. */
async function handlerCall(body, { cookie, signature, route = '/chat-rooms/{id}' } = {}) {
  const json = JSON.stringify(body);
  const headers = {
    'Content-Type': 'application/json',
    'X-Resonance-Event': body.event,
    'X-Resonance-Signature': signature ?? hmac(json),
    'X-Forwarded-For': '203.0.113.9',
  };
  if (cookie) headers.Cookie = cookie;
  const res = await fetch(`${laravel.url}/resonance/socket?route=${encodeURIComponent(route)}`, { method: 'POST', headers, body: json, signal: AbortSignal.timeout(DEFAULT_WAIT_MS) });
  const text = await res.text();
  let parsed = null;
  try {
    parsed = JSON.parse(text);
  } catch {
    /* not JSON */
  }
  return { status: res.status, json: parsed, text };
}

const connectBody = (room = '7') => ({
  event: 'connect',
  socket_id: 'sock-42',
  path: `/chat-rooms/${room}`,
  params: { id: room },
  query: {},
  headers: { origin: laravel.url, 'user-agent': 'node' },
});

stackTest('handler endpoint: a signed connect with the browser session cookie → user_id and the ChatSocket actions', async () => {
  const a = await new Browser(laravel, 'alice').login(USERS.alice);
  const r = await handlerCall(connectBody(), { cookie: a.cookie });
  assert.equal(r.status, 200, r.text);
  assert.deepEqual(r.json, {
    actions: [
      { send: { type: 'welcome', user: 'Alice', room: '7', socket: 'sock-42' } },
      { broadcast: { room: 'chat-rooms.7', data: { type: 'joined', user: 'Alice' }, except_self: true } },
    ],
    user_id: '1',
  });
  const m = await handlerCall({ event: 'message', socket_id: 'sock-42', user_id: '1', path: '/chat-rooms/7', params: { id: '7' }, data: 'hi all' }, { cookie: a.cookie });
  assert.deepEqual(m.json.actions, [
    { broadcast: { room: 'chat-rooms.7', data: { type: 'message', user: 'Alice', text: 'hi all' }, except_self: true } },
    { send: { type: 'sent', text: 'hi all' } },
  ]);
});

stackTest('handler endpoint: refusals (guest 401, unsigned 401, forged signature 401, unknown route 404)', async () => {
  const guest = await new Browser(laravel, 'guest').visit();
  const g = await handlerCall(connectBody(), { cookie: guest.cookie });
  assert.deepEqual([g.status, g.json.message], [401, 'log in first']);
  const a = await new Browser(laravel, 'alice').login(USERS.alice);
  assert.equal((await handlerCall(connectBody(), { cookie: a.cookie, signature: '' })).status, 401);
  assert.equal((await handlerCall(connectBody(), { cookie: a.cookie, signature: 'ab'.repeat(32) })).status, 401);
  assert.equal((await handlerCall(connectBody(), { cookie: a.cookie, route: '/nope' })).status, 404);
});

/** Wait for the stand-in API to have received `n` calls. */
async function apiCalls(n) {
  await withTimeout(
    (async () => {
      while (api.calls.length < n) await new Promise((r) => setTimeout(r, 20));
    })(),
    DEFAULT_WAIT_MS,
    `${n} API calls (got ${JSON.stringify(api.calls)})`,
  );
  return api.calls.slice(-1)[0];
}

stackTest('Socket:: from a controller: signed API calls with the contract paths and bodies', async () => {
  const a = await new Browser(laravel, 'alice').login(USERS.alice);
  const base = `/apps/${APP.id}`;
  const cases = [
    ['broadcast', { room: 'chat-rooms.7', data: '{"a":1}', except: '9.9' }, `${base}/rooms/chat-rooms.7/broadcast`, { data: { a: 1 }, except: ['9.9'] }],
    ['broadcast', { room: 'room with/slash', data: '"text"' }, `${base}/rooms/room%20with%2Fslash/broadcast`, { data: 'text' }],
    ['to-user', { user_id: '2', data: '{"ping":true}' }, `${base}/users/2/send`, { data: { ping: true } }],
    ['emit', { socket_id: '1.23', data: '[1,2]' }, `${base}/sockets/1.23/send`, { data: [1, 2] }],
    ['join', { socket_id: '1.23', room: 'vip' }, `${base}/sockets/1.23/join`, { room: 'vip' }],
    ['leave', { socket_id: '1.23', room: 'vip' }, `${base}/sockets/1.23/leave`, { room: 'vip' }],
    ['close', { socket_id: '1.23', code: '4001', reason: 'kicked' }, `${base}/sockets/1.23/close`, { code: 4001, reason: 'kicked' }],
  ];
  for (const [action, form, path, body] of cases) {
    const before = api.calls.length;
    await a.ok(`/sockets/${action}`, form);
    const call = await apiCalls(before + 1);
    assert.deepEqual({ method: call.method, path: call.path, body: call.body, problems: call.problems }, { method: 'POST', path, body, problems: [] }, action);
  }
  // Resonance's error answer surfaces as an exception in the app (here: a 500 from the route)
  const before = api.calls.length;
  const gone = await a.post('/sockets/emit', { socket_id: 'gone.1', data: '"x"' });
  assert.equal(gone.status, 500);
  await apiCalls(before + 1);
  assert.match(laravel.appLog(80), /Resonance answered 404 to POST \/apps\/880001\/sockets\/gone\.1\/send: unknown socket/);
  // a non-admin is refused by the app's own rule, no API call
  const b = await new Browser(laravel, 'bob').login(USERS.bob);
  const n = api.calls.length;
  assert.equal((await b.post('/sockets/broadcast', { room: 'x', data: '1' })).status, 403);
  assert.equal(api.calls.length, n);
});

/** POST a Pusher-format webhook to the app. */
async function webhook(events, { signature, key = APP.key } = {}) {
  const body = JSON.stringify({ time_ms: Date.now(), events });
  const res = await fetch(`${laravel.url}/resonance/webhooks`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', 'X-Pusher-Key': key, 'X-Pusher-Signature': signature ?? hmac(body) },
    body,
    signal: AbortSignal.timeout(DEFAULT_WAIT_MS),
  });
  return { status: res.status, json: await res.json().catch(() => null) };
}

const online = async (id) => (await (await fetch(`${laravel.url}/users/${id}/online`)).json()).online;

stackTest('webhooks: member_added / member_removed → Laravel events → the listener marks the user online / offline', async () => {
  assert.equal(await online(3), false);
  assert.deepEqual(await webhook([{ name: 'member_added', channel: 'presence-chat.lobby', user_id: '3' }]), { status: 200, json: { dispatched: 1 } });
  assert.equal(await online(3), true);
  // a forged webhook changes nothing
  assert.equal((await webhook([{ name: 'member_removed', channel: 'presence-chat.lobby', user_id: '3' }], { signature: '00'.repeat(32) })).status, 401);
  assert.equal((await webhook([{ name: 'member_removed', channel: 'presence-chat.lobby', user_id: '3' }], { key: 'other-key' })).status, 401);
  assert.equal(await online(3), true);
  assert.equal((await webhook([{ name: 'member_removed', channel: 'presence-chat.lobby', user_id: '3' }])).status, 200);
  assert.equal(await online(3), false);
});
