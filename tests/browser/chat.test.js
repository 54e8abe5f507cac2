// Two people in the chat example's page, in headless Chromium: one sends,
// the other sees it. CHAT_URL is the running example's base URL;
// SCREENSHOT is where the receiving page's picture goes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const base = process.env.CHAT_URL;
const screenshot = process.env.SCREENSHOT || join(tmpdir(), 'chat.png');

test('a message typed by alice shows up on bob\'s page', async () => {
  assert.ok(base, 'CHAT_URL must point at the running chat example');
  const profile = mkdtempSync(join(tmpdir(), 'resonance-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--no-first-run',
      '--disable-background-networking', '--disable-component-update',
      '--disable-sync', '--disable-quic',
    ],
    viewport: { width: 720, height: 420 },
  });
  try {
    const alice = await context.newPage();
    const bob = await context.newPage();
    await alice.goto(`${base}/?room=lobby&name=alice`);
    await bob.goto(`${base}/?room=lobby&name=bob`);
    for (const page of [alice, bob]) {
      await page.locator('#status', { hasText: 'connected' }).waitFor({ timeout: 10000 });
      await page.locator('#users li', { hasText: 'bob' }).waitFor({ timeout: 10000 });
      assert.deepEqual(await page.locator('#users li').allTextContents(), ['alice', 'bob']);
    }

    await alice.fill('#text', 'Hello from Alice');
    await alice.click('#send');
    const line = bob.locator('#log li', { hasText: 'Hello from Alice' });
    await line.waitFor({ timeout: 10000 });
    assert.equal((await line.textContent()).trim(), 'alice: Hello from Alice');
    // Alice sees her own line once (drawn locally, not echoed back).
    await alice.waitForTimeout(300);
    assert.equal(await alice.locator('#log li').count(), 1);

    await bob.fill('#text', 'Hi Alice!');
    await bob.press('#text', 'Enter');
    await alice.locator('#log li', { hasText: 'bob: Hi Alice!' }).waitFor({ timeout: 10000 });

    await bob.screenshot({ path: screenshot });
    console.log(`screenshot: ${screenshot}`);
  } finally {
    await context.close();
    rmSync(profile, { recursive: true, force: true });
  }
});
