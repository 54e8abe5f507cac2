// The live dashboard as an operator uses it, in headless Chromium against the
// real `resonance` binary: log in with the app's key and secret, see a
// pusher-js client connect and subscribe (pushed live, no reload), watch the
// debug console, send a test event from the form and see the pusher-js client
// receive it. Screenshots (desktop and phone width) go to $SCREENSHOT_DIR
// (default target/browser).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import Pusher from 'pusher-js';
import {
  BIN, REPO_ROOT, ManagedProcess, envWithout, freePort, pusherConnectOptions, spawnAndWaitUp,
  withRetries, withTimeout,
} from '../common/harness-core.js';

const shots = process.env.SCREENSHOT_DIR || join(REPO_ROOT, 'target', 'browser');
const app = { id: '100000', key: 'dash-key', secret: 'dash-secret-0123456789' };

async function startServer() {
  return withRetries(async () => {
    const port = await freePort();
    const env = {
      ...envWithout('RESONANCE_'),
      RESONANCE_HOST: '127.0.0.1',
      RESONANCE_PORT: String(port),
      RESONANCE_APP_ID: app.id,
      RESONANCE_APP_KEY: app.key,
      RESONANCE_APP_SECRET: app.secret,
      RESONANCE_DASHBOARD: '1',
      RESONANCE_LOG: 'warn',
    };
    return spawnAndWaitUp({
      bin: BIN,
      args: ['start'],
      env,
      create: (proc) => new ManagedProcess({ proc, host: '127.0.0.1', port, app }),
    });
  });
}

test('the dashboard shows a client live and its form reaches pusher-js', async (t) => {
  mkdirSync(shots, { recursive: true });
  const server = await startServer();
  const profile = mkdtempSync(join(tmpdir(), 'resonance-dashboard-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--no-first-run',
      '--disable-background-networking', '--disable-component-update',
      '--disable-sync', '--disable-quic',
    ],
    viewport: { width: 1100, height: 900 },
  });
  let pusher;
  const consoleErrors = [];
  try {
    const page = await context.newPage();
    page.on('console', (m) => m.type() === 'error' && consoleErrors.push(m.text()));
    page.on('pageerror', (e) => consoleErrors.push(String(e)));
    await page.goto(`${server.httpUrl}/dashboard`);
    // Not logged in: the login form, no figures.
    await page.locator('#login').waitFor({ state: 'visible', timeout: 10000 });
    assert.equal(await page.locator('#board').isVisible(), false);
    // A wrong secret is refused with a message.
    await page.fill('#key', app.key);
    await page.fill('#secret', 'wrong');
    await page.click('#login-form button[type=submit]');
    await page.locator('#login-error', { hasText: 'wrong' }).waitFor({ timeout: 10000 });
    await page.fill('#secret', app.secret);
    await page.click('#login-form button[type=submit]');
    await page.locator('#status', { hasText: 'live' }).waitFor({ timeout: 10000 });
    await page.locator('#connections', { hasText: /^0$/ }).waitFor({ timeout: 10000 });

    // A pusher-js client connects: the page shows it without a reload.
    pusher = new Pusher(app.key, pusherConnectOptions(server));
    await withTimeout(new Promise((resolve) => pusher.connection.bind('connected', resolve)), 10000, 'pusher-js connected');
    await page.locator('#connections', { hasText: /^1$/ }).waitFor({ timeout: 10000 });

    // It subscribes: the channel appears with its subscriber, and the debug
    // console logs the subscription.
    const channel = pusher.subscribe('dashboard-demo');
    await withTimeout(new Promise((resolve) => channel.bind('pusher:subscription_succeeded', resolve)), 10000, 'subscribed');
    const row = page.locator('#channels tr', { hasText: 'dashboard-demo' });
    await row.waitFor({ timeout: 10000 });
    assert.equal((await row.locator('td').nth(1).textContent()).trim(), '1');

    // The debug console logged the connection and the subscription.
    await page.locator('#log tr', { hasText: 'subscribed' }).filter({ hasText: 'dashboard-demo' }).waitFor({ timeout: 10000 });
    await page.locator('#log tr', { hasText: 'connection' }).first().waitFor({ timeout: 10000 });

    // The test-event form reaches the pusher-js client.
    const received = new Promise((resolve) => channel.bind('greeting', resolve));
    await page.fill('#send-channel', 'dashboard-demo');
    await page.fill('#send-event', 'greeting');
    await page.fill('#send-data', '{"text":"hello from the dashboard"}');
    await page.click('#send-form button[type=submit]');
    const data = await withTimeout(received, 10000, 'the test event at the pusher-js client');
    assert.deepEqual(data, { text: 'hello from the dashboard' });
    await page.locator('#send-result', { hasText: 'Sent.' }).waitFor({ timeout: 10000 });
    // The console shows the API event; filtering by its name leaves only it.
    await page.locator('#log tr', { hasText: 'api_message' }).filter({ hasText: 'greeting' }).waitFor({ timeout: 10000 });
    await page.fill('#filter', 'greeting');
    await page.waitForFunction(() => [...document.querySelectorAll('#log tr')].filter((tr) => !tr.hidden).every((tr) => tr.textContent.includes('greeting')), null, { timeout: 5000 });
    assert.ok(await page.locator('#log tr', { hasText: 'subscribed' }).first().isHidden());
    await page.fill('#filter', '');
    // Messages out show up in the figures (pushed each second).
    await page.waitForFunction(() => /^Peak [1-9]/.test(document.getElementById('chart').getAttribute('aria-label')), null, { timeout: 10000 });

    await page.screenshot({ path: join(shots, 'dashboard.png'), fullPage: true });
    await page.setViewportSize({ width: 390, height: 844 });
    await page.evaluate(() => window.scrollTo(0, 0));
    await page.screenshot({ path: join(shots, 'dashboard-phone.png'), fullPage: false });
    console.log(`screenshots: ${join(shots, 'dashboard.png')}, ${join(shots, 'dashboard-phone.png')}`);
    // The 401s of the session check before login and of the wrong secret are expected.
    const unexpected = consoleErrors.filter((e) => !/status of 401/.test(e));
    assert.deepEqual(unexpected, [], 'no errors in the page (CSP violations included)');

    // Logging out ends the live view.
    await page.click('#logout');
    await page.locator('#login').waitFor({ state: 'visible', timeout: 10000 });
  } finally {
    if (pusher) pusher.disconnect();
    await context.close();
    rmSync(profile, { recursive: true, force: true });
    if (t.passed === false) console.log(server.logTail(40));
    await server.stop();
  }
});
