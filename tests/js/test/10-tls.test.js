// 10. The built-in TLS (RESONANCE_TLS_CERT/KEY) for the Pusher front-end: Laravel Echo's
//     `reverb` connector with forceTLS + wssPort (the README's REVERB_SCHEME=https recipe),
//     pusher-js with forceTLS, and a raw `ws` client on a custom route, all over wss://.
//     The certificate is self-signed, made with the openssl CLI for this run; this process
//     accepts it through NODE_TLS_REJECT_UNAUTHORIZED=0 (test-only: pusher-js has no way to
//     pass a CA to its Node transport).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Echo from 'laravel-echo';
import WebSocket from 'ws';
import { useHarness, Pusher, trigger, track, waitUntil, withTimeout, uid, DEFAULT_WAIT_MS } from '../lib/harness.js';

process.env.NODE_TLS_REJECT_UNAUTHORIZED = '0';
process.removeAllListeners('warning');

const h = useHarness();
let server, auth, dir;

before(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'resonance-js-tls-'));
  const tls = { cert: path.join(dir, 'cert.pem'), key: path.join(dir, 'key.pem') };
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', tls.key, '-out', tls.cert, '-days', '1',
    '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1'], { stdio: 'ignore' });
  server = await h.startServer({ tls, env: { RESONANCE_ECHO_PATH: '/echo' } });
  auth = await h.startAuth(server.app);
});

after(() => fs.rmSync(dir, { recursive: true, force: true }));

test('Echo reverb connector with forceTLS and wssPort: private channel over wss receives an API event', async () => {
  const echo = track(new Echo({
    broadcaster: 'reverb',
    key: server.app.key,
    wsHost: server.host,
    wsPort: 1, // must not be used: forceTLS picks wssPort
    wssPort: server.port,
    forceTLS: true,
    enabledTransports: ['ws', 'wss'],
    disableStats: true,
    authEndpoint: auth.channelEndpoint,
    auth: { headers: { 'X-Test-User': '1' } },
    Pusher,
  }));
  await waitUntil(() => echo.connectionStatus() === 'connected', DEFAULT_WAIT_MS, 'Echo (reverb, forceTLS) connected');
  const name = uid('orders');
  const got = [];
  const channel = echo.private(name).listen('.OrderShipped', (e) => got.push(e));
  await withTimeout(new Promise((resolve, reject) => {
    channel.subscribed(resolve);
    channel.error((e) => reject(new Error(JSON.stringify(e))));
  }), DEFAULT_WAIT_MS, 'private channel subscribed over wss');
  const big = 'z'.repeat(9000);
  await trigger(server, `private-${name}`, 'OrderShipped', { id: 7, big });
  await waitUntil(() => got.length === 1, DEFAULT_WAIT_MS, 'the event over wss');
  assert.deepEqual(got[0], { id: 7, big });
});

test('pusher-js forceTLS: public channel over wss, events in order', async () => {
  const p = track(new Pusher(server.app.key, {
    wsHost: server.host, wssPort: server.port, forceTLS: true, enabledTransports: ['ws'], disableStats: true, cluster: 'mt1',
  }));
  const name = uid('news');
  const got = [];
  const ch = p.subscribe(name);
  ch.bind('n', (d) => got.push(d.i));
  await withTimeout(new Promise((resolve) => ch.bind('pusher:subscription_succeeded', resolve)), DEFAULT_WAIT_MS, 'subscribed over wss');
  for (let i = 0; i < 20; i++) await trigger(server, name, 'n', { i });
  await waitUntil(() => got.length === 20, DEFAULT_WAIT_MS, () => `20 events (got ${got.length})`);
  assert.deepEqual(got, [...Array(20).keys()]);
});

test('raw ws client on a custom route (RESONANCE_ECHO_PATH) over wss', async () => {
  const ws = new WebSocket(`wss://${server.host}:${server.port}/echo`);
  track({ disconnect: () => ws.close() });
  await withTimeout(new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject); }), DEFAULT_WAIT_MS, 'wss open');
  const big = 'y'.repeat(40000);
  const echoed = withTimeout(new Promise((resolve) => ws.once('message', (m) => resolve(m.toString()))), DEFAULT_WAIT_MS, 'echo');
  ws.send(big);
  assert.equal(await echoed, big);
});
