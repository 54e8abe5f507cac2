// pusher-js's HTTP fallback in headless Chromium: a page on another origin, with the WebSocket
// transports disabled (enabledTransports: ['xhr_streaming'] / ['xhr_polling']), shows events
// triggered through the HTTP API as they arrive. The page's requests to Resonance are
// cross-origin, so CORS preflights are part of the test. RESONANCE_BIN is the server binary.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRequire } from 'node:module';
import { chromium } from 'playwright-core';
import { ManagedProcess, freePort, spawnAndWaitUp, triggerEvent, signedApiRequest, uid } from '../common/harness-core.js';

const require = createRequire(import.meta.url);
const pusherJs = readFileSync(require.resolve('pusher-js/dist/web/pusher.min.js'));
const app = { id: '515151', key: 'browser-fallback-key', secret: 'browser-fallback-secret' };

const page = `<!doctype html><meta charset="utf-8"><title>fallback</title>
<script src="/pusher.min.js"></script>
<p id="status">connecting</p><ul id="log"></ul>
<script>
  const q = new URLSearchParams(location.search);
  const pusher = new Pusher(q.get('key'), {
    cluster: 'mt1', forceTLS: false, disableStats: true,
    httpHost: q.get('host'), httpPort: Number(q.get('port')), httpPath: '/pusher',
    enabledTransports: [q.get('transport')],
  });
  pusher.connection.bind('state_change', ({ current }) => {
    const t = pusher.connection.connection;
    document.getElementById('status').textContent = current + (t ? ' ' + t.transport.name : '');
  });
  pusher.subscribe(q.get('channel')).bind('news', (data) => {
    const li = document.createElement('li');
    li.textContent = data.text;
    document.getElementById('log').appendChild(li);
  });
</script>`;

let server, pages, context, profile;
before(async () => {
  const port = await freePort();
  server = await spawnAndWaitUp({
    args: ['start', '--host', '127.0.0.1', '--port', String(port)],
    env: { ...process.env, RESONANCE_APP_ID: app.id, RESONANCE_APP_KEY: app.key, RESONANCE_APP_SECRET: app.secret, NO_COLOR: '1' },
    create: (proc) => new ManagedProcess({ proc, host: '127.0.0.1', port, app }),
  });
  pages = http.createServer((req, res) => {
    if (req.url === '/pusher.min.js') {
      res.writeHead(200, { 'Content-Type': 'text/javascript' });
      return res.end(pusherJs);
    }
    res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' });
    res.end(page);
  });
  await new Promise((r) => pages.listen(0, '127.0.0.1', r));
  profile = mkdtempSync(join(tmpdir(), 'resonance-chromium-'));
  context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--disable-quic'],
  });
});
after(async () => {
  await context?.close();
  if (profile) rmSync(profile, { recursive: true, force: true });
  pages?.close();
  await server?.stop();
});

const api = (srv, method, path, opts) => signedApiRequest(srv.httpUrl, app, method, `/apps/${app.id}${path}`, opts);

for (const transport of ['xhr_streaming', 'xhr_polling']) {
  test(`Chromium without WebSockets shows events live over ${transport}`, async () => {
    const channel = uid('news');
    // "localhost" for the page and 127.0.0.1 for Resonance: two origins
    const url = `http://localhost:${pages.address().port}/?key=${app.key}&host=127.0.0.1&port=${server.port}&transport=${transport}&channel=${channel}`;
    const tab = await context.newPage();
    const sockets = [];
    tab.on('websocket', (ws) => sockets.push(ws.url()));
    try {
      await tab.goto(url);
      await tab.locator('#status', { hasText: `connected ${transport}` }).waitFor({ timeout: 10000 });
      // subscribed once the server counts the channel occupied
      const deadline = Date.now() + 10000;
      while (!(await api(server, 'GET', `/channels/${channel}`)).json?.occupied) {
        assert.ok(Date.now() < deadline, 'the page subscribed');
        await new Promise((r) => setTimeout(r, 50));
      }
      for (const text of ['first', 'second "quoted"', 'third ünïcode']) {
        await triggerEvent(api, server, channel, 'news', { text });
        await tab.locator('#log li', { hasText: text }).waitFor({ timeout: 10000 });
      }
      assert.deepEqual(await tab.locator('#log li').allTextContents(), ['first', 'second "quoted"', 'third ünïcode']);
      assert.deepEqual(sockets, [], 'no WebSocket was opened');
    } finally {
      await tab.close();
    }
  });
}
