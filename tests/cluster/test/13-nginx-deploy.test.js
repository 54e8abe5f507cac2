// 13. The README's deployment, run for real: Debian's nginx with deploy/nginx.conf (the file the
//     README shows) terminating TLS in front of two Resonance nodes over a real redis-server.
//     Through nginx only: pusher-js over wss:// and over xhr_streaming (https), socket.io-client 4 over polling and over
//     websocket, the signed HTTP API, the dashboard (login cookie marked Secure from
//     X-Forwarded-Proto, its live socket over wss with the Origin check passing through the
//     proxy's Host), and a node going away (SIGTERM: 4200, pusher-js reconnects through nginx to
//     the other node and still gets events).
//
// The config is the file itself with four substitutions (listen address, certificate paths, the
// two upstream addresses); each must match, so the file cannot drift from what is tested.
// Skipped when nginx is not installed (.ci/run installs it).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import WebSocket from 'ws';
import { io as sio4 } from 'sio4';
import {
  useCluster, Pusher, REPO_ROOT, DEFAULT_WAIT_MS, freePort, signApiRequest, waitUntil, withTimeout, uid, sleep, ENGINE,
} from '../lib/harness.js';

process.env.NODE_TLS_REJECT_UNAUTHORIZED = '0'; // the proxy's certificate is self-signed (test-only)
process.removeAllListeners('warning');

const NGINX = ['/usr/sbin/nginx', '/usr/bin/nginx'].find((p) => fs.existsSync(p));
const TOKEN = 'nginx-test-dashboard-token-0123';
const h = useCluster();
let dir, nginx, base, hostPort;

function substitute(text, from, to) {
  assert.ok(text.includes(from), `deploy/nginx.conf no longer contains ${JSON.stringify(from)}`);
  return text.split(from).join(to);
}

before(async () => {
  if (!NGINX) return;
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'resonance-nginx-'));
  fs.chmodSync(dir, 0o755); // nginx workers run as nobody when started by root
  for (const sub of ['tmp', 'logs']) fs.mkdirSync(path.join(dir, sub), { mode: 0o777 });
  fs.chmodSync(path.join(dir, 'tmp'), 0o777);
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', path.join(dir, 'key.pem'),
    '-out', path.join(dir, 'cert.pem'), '-days', '1', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1'],
  { stdio: 'ignore' });
  await h.redis();
});

after(async () => {
  if (nginx && nginx.exitCode === null) {
    nginx.kill('SIGTERM');
    await withTimeout(new Promise((r) => nginx.once('exit', r)), 5000, 'nginx exit').catch(() => nginx.kill('SIGKILL'));
  }
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

async function startNginx(nodes) {
  const port = await freePort();
  let site = fs.readFileSync(path.join(REPO_ROOT, 'deploy', 'nginx.conf'), 'utf8');
  const readme = fs.readFileSync(path.join(REPO_ROOT, 'README.md'), 'utf8');
  assert.ok(readme.includes(site.trim()), 'README.md shows deploy/nginx.conf verbatim');
  site = substitute(site, 'listen 443 ssl;', `listen 127.0.0.1:${port} ssl;`);
  site = substitute(site, '/etc/ssl/ws.example.com/fullchain.pem', path.join(dir, 'cert.pem'));
  site = substitute(site, '/etc/ssl/ws.example.com/privkey.pem', path.join(dir, 'key.pem'));
  site = substitute(site, 'server 10.0.0.11:6001', `server 127.0.0.1:${nodes[0].port}`);
  site = substitute(site, 'server 10.0.0.12:6001', `server 127.0.0.1:${nodes[1].port}`);
  fs.writeFileSync(path.join(dir, 'site.conf'), site);
  const tmp = path.join(dir, 'tmp');
  fs.writeFileSync(path.join(dir, 'nginx.conf'), `
daemon off;
worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/logs/error.log warn;
events { worker_connections 512; }
http {
  access_log ${dir}/logs/access.log;
  client_body_temp_path ${tmp}/body;
  proxy_temp_path ${tmp}/proxy;
  fastcgi_temp_path ${tmp}/fastcgi;
  uwsgi_temp_path ${tmp}/uwsgi;
  scgi_temp_path ${tmp}/scgi;
  include ${dir}/site.conf;
}
`);
  nginx = spawn(NGINX, ['-p', dir, '-e', `${dir}/logs/error.log`, '-c', path.join(dir, 'nginx.conf')], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  nginx.stderr.on('data', (c) => (stderr += c));
  hostPort = `127.0.0.1:${port}`;
  base = `https://${hostPort}`;
  await waitUntil(async () => {
    if (nginx.exitCode !== null) throw new Error(`nginx exited: ${stderr} ${fs.readFileSync(`${dir}/logs/error.log`, 'utf8')}`);
    const r = await fetch(`${base}/up`, { signal: AbortSignal.timeout(1000) });
    return r.status === 200;
  }, 10000, () => `nginx answering ${base}/up (${stderr})`);
}

/** A signed HTTP API request through nginx. */
async function api(app, method, apiPath, body) {
  const bodyStr = body === undefined ? undefined : JSON.stringify(body);
  const params = signApiRequest(app, method, `/apps/${app.id}${apiPath}`, {}, bodyStr);
  const qs = new URLSearchParams(params).toString();
  const res = await fetch(`${base}/apps/${app.id}${apiPath}?${qs}`, {
    method,
    headers: bodyStr ? { 'Content-Type': 'application/json' } : {},
    body: bodyStr,
    signal: AbortSignal.timeout(DEFAULT_WAIT_MS),
  });
  const text = await res.text();
  return { status: res.status, text, json: JSON.parse(text || 'null') };
}

const trigger = async (app, channel, name, data) => {
  const r = await api(app, 'POST', '/events', { name, channel, data: JSON.stringify(data) });
  assert.equal(r.status, 200, `trigger through nginx: ${r.text}`);
};

/** Which node holds `n` Pusher connections, read from each node's own /metrics (not via nginx). */
async function nodeWithConnections(nodes, app, n) {
  let found;
  await waitUntil(async () => {
    for (const node of nodes) {
      if (!node.running) continue;
      const m = await node.get('/metrics');
      if (m.text.includes(`resonance_connections{app_id="${app.id}"} ${n}`)) found = node;
    }
    return found;
  }, DEFAULT_WAIT_MS, `a node with ${n} connection(s)`);
  return found;
}

function socketio(transport, channel) {
  const got = [];
  const s = sio4(base, { transports: [transport], reconnection: false, ca: fs.readFileSync(path.join(dir, 'cert.pem')) });
  s.onAny((event, ch, data) => got.push({ event, ch, data }));
  const connected = withTimeout(new Promise((resolve, reject) => {
    s.once('connect', resolve);
    s.once('connect_error', reject);
  }), DEFAULT_WAIT_MS, `socket.io ${transport} through nginx`);
  return { s, got, connected: connected.then(() => s.emit('subscribe', { channel, auth: {} })) };
}

test('deploy/nginx.conf: TLS in front of two nodes carries every front-end, the API and the dashboard', { skip: !NGINX && 'nginx not installed (apt-get install nginx-light)' }, async () => {
  const nodes = await h.startCluster(2, { env: { RESONANCE_DASHBOARD: '1', RESONANCE_DASHBOARD_TOKEN: TOKEN } });
  const app = nodes[0].app;
  await startNginx(nodes);
  const channel = uid('nginx');

  // pusher-js over wss:// through nginx.
  const pusher = new Pusher(app.key, {
    wsHost: '127.0.0.1', wssPort: Number(hostPort.split(':')[1]), forceTLS: true,
    enabledTransports: ['ws'], disableStats: true, cluster: 'mt1',
  });
  const pusherGot = [];
  try {
    await waitUntil(() => pusher.connection.state === 'connected', DEFAULT_WAIT_MS, () => `pusher-js over wss through nginx (${pusher.connection.state})`);
    const ch = pusher.subscribe(channel);
    await withTimeout(new Promise((r) => ch.bind('pusher:subscription_succeeded', r)), DEFAULT_WAIT_MS, 'pusher-js subscribed');
    ch.bind_global((event, data) => pusherGot.push({ event, data }));

    // socket.io-client 4, long-polling and websocket, through nginx.
    const polling = socketio('polling', channel);
    const websocket = socketio('websocket', channel);
    await Promise.all([polling.connected, websocket.connected]);
    assert.equal(polling.s.io.engine.transport.name, 'polling');
    assert.equal(websocket.s.io.engine.transport.name, 'websocket');

    // The HTTP API through nginx reaches all three (probes until subscriptions are in place).
    const seen = (list, n) => list.some((g) => g.event === 'probe' && (g.data?.n ?? g.data?.data?.n) === n);
    let n = 0;
    await waitUntil(async () => {
      n += 1;
      await trigger(app, channel, 'probe', { n });
      await sleep(100);
      return seen(pusherGot, n) && seen(polling.got, n) && seen(websocket.got, n);
    }, 10000, () => `an API event through nginx at pusher-js, socket.io polling and websocket (${JSON.stringify({ pusherGot, polling: polling.got, websocket: websocket.got })})`);
    const info = await api(app, 'GET', `/channels/${channel}`, undefined);
    assert.equal(info.status, 200, info.text);
    assert.equal(info.json.occupied, true, info.text);

    // The dashboard through nginx: login cookie is Secure (X-Forwarded-Proto), the live socket
    // passes the Origin check (Host keeps the port) and shows the connections.
    const login = await fetch(`${base}/dashboard/login`, {
      method: 'POST', headers: { 'Content-Type': 'application/json', Origin: base }, body: JSON.stringify({ token: TOKEN }),
    });
    assert.equal(login.status, 200, await login.text());
    const cookie = login.headers.get('set-cookie');
    assert.match(cookie, /; Secure/, cookie);
    const live = new WebSocket(`wss://${hostPort}/dashboard/live?app=${app.id}`, {
      headers: { Cookie: cookie.split(';')[0], Origin: base }, rejectUnauthorized: false,
    });
    const stats = await withTimeout(new Promise((resolve, reject) => {
      live.on('message', (m) => {
        const v = JSON.parse(m.toString());
        // Both nodes listed (heartbeats) and the channel (a cluster query) shown.
        if (v.type === 'stats' && v.cluster.nodes.length === 2 && v.channels.some((c) => c.name === channel)) resolve(v);
      });
      live.once('error', reject);
    }), 10000, 'a dashboard stats message over wss through nginx listing both nodes and the channel');
    live.close();
    assert.equal(stats.cluster.adapter, ENGINE);
    assert.ok(stats.cluster.nodes.every((x) => x.alive), JSON.stringify(stats.cluster));
    const evil = await fetch(`${base}/dashboard/login`, {
      method: 'POST', headers: { 'Content-Type': 'application/json', Origin: 'https://evil.example' }, body: JSON.stringify({ token: TOKEN }),
    });
    assert.equal(evil.status, 403);

    // One node leaves (SIGTERM): pusher-js is told 4200, reconnects through nginx to the other
    // node, and API events through nginx still reach it.
    polling.s.close();
    websocket.s.close();
    const holder = await nodeWithConnections(nodes, app, 1);
    const other = nodes.find((x) => x !== holder);
    let reconnected = false;
    pusher.connection.bind('state_change', ({ current }) => {
      if (current === 'connected') reconnected = true;
    });
    await holder.stop();
    await waitUntil(() => reconnected && pusher.connection.state === 'connected', 10000, () => `pusher-js back through nginx (${pusher.connection.state})`);
    await nodeWithConnections([other], app, 1);
    await waitUntil(async () => {
      n += 1;
      await trigger(app, channel, 'probe', { n });
      await sleep(100);
      return seen(pusherGot, n);
    }, 10000, 'an API event through nginx after the failover');

    // pusher-js's HTTP fallback (xhr_streaming) over https:// through nginx: the streamed
    // answers pass unbuffered (proxy_buffering off), and nginx's retry skips the stopped node.
    const fallback = new Pusher(app.key, {
      httpHost: '127.0.0.1', httpsPort: Number(hostPort.split(':')[1]), httpPath: '/pusher', forceTLS: true,
      enabledTransports: ['xhr_streaming'], disableStats: true, cluster: 'mt1',
    });
    const fallbackGot = [];
    try {
      await waitUntil(() => fallback.connection.state === 'connected', DEFAULT_WAIT_MS, () => `pusher-js xhr_streaming through nginx (${fallback.connection.state})`);
      const fch = fallback.subscribe(channel);
      await withTimeout(new Promise((r) => fch.bind('pusher:subscription_succeeded', r)), DEFAULT_WAIT_MS, 'pusher-js xhr_streaming subscribed through nginx');
      fch.bind_global((event, data) => fallbackGot.push({ event, data }));
      await waitUntil(async () => {
        n += 1;
        await trigger(app, channel, 'probe', { n });
        await sleep(100);
        return seen(fallbackGot, n) && seen(pusherGot, n);
      }, 10000, () => `an API event over xhr_streaming through nginx (${JSON.stringify(fallbackGot)})`);
    } finally {
      fallback.disconnect();
    }
  } finally {
    pusher.disconnect();
  }
});
