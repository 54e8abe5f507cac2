// The PHP chat example (examples/handlers/app.php) behind Resonance's
// [[routes]]: real WebSocket clients (ws) with session cookies, then two
// people in headless Chromium. Every wait is for a message (a sentinel
// where something must NOT arrive), never a fixed sleep.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import WebSocket from 'ws';
import { chromium } from 'playwright-core';

const app = process.env.APP_URL;
const wsBase = process.env.WS_URL;
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';

async function login(name, room = 'lobby') {
  const res = await fetch(`${app}/login`, {
    method: 'POST',
    body: new URLSearchParams({ name, room }),
    redirect: 'manual',
  });
  assert.equal(res.status, 302);
  const cookie = res.headers.get('set-cookie').split(';')[0];
  assert.match(cookie, /^chat_session=/);
  return cookie;
}

/** A connected client with a queue of parsed messages. */
function client(room, cookie) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`${wsBase}/chat-rooms/${room}`, { headers: cookie ? { cookie } : {} });
    const queue = [];
    const waiters = [];
    ws.on('message', (data) => {
      const m = JSON.parse(data.toString());
      const w = waiters.shift();
      if (w) w(m); else queue.push(m);
    });
    ws.next = () => new Promise((res, rej) => {
      if (queue.length) return res(queue.shift());
      const timer = setTimeout(() => rej(new Error('no message within 5 s')), 5000);
      waiters.push((m) => { clearTimeout(timer); res(m); });
    });
    ws.say = (text, to) => ws.send(JSON.stringify(to ? { text, to } : { text }));
    ws.on('open', () => resolve(ws));
    ws.on('unexpected-response', (_req, res) => reject(Object.assign(new Error('refused'), { status: res.statusCode })));
    ws.on('error', reject);
  });
}

async function announce(cookie, room, text) {
  const res = await fetch(`${app}/announce`, {
    method: 'POST',
    headers: { cookie },
    body: new URLSearchParams({ room, text }),
  });
  assert.equal(res.status, 200, await res.text());
}

test('rooms by path, users from the session cookie, emit to one, broadcast except sender', async () => {
  const [ca, cb, cc] = await Promise.all([login('alice'), login('bob'), login('carol')]);

  // No session: the app refuses the connect, so the upgrade is a 401.
  await assert.rejects(client('7', null), (e) => e.status === 401);
  // A forged cookie is no better.
  await assert.rejects(client('7', 'chat_session=mallory|00'), (e) => e.status === 401);

  const alice = await client('7', ca);
  assert.deepEqual(await alice.next(), { type: 'welcome', room: '7', you: 'alice' });
  const bob = await client('7', cb);
  assert.deepEqual(await bob.next(), { type: 'welcome', room: '7', you: 'bob' });
  assert.deepEqual(await alice.next(), { type: 'joined', user: 'bob' });
  const carol = await client('8', cc);
  assert.deepEqual(await carol.next(), { type: 'welcome', room: '8', you: 'carol' });

  // Broadcast to room 7 except the sender.
  alice.say('hello room 7');
  assert.deepEqual(await bob.next(), { type: 'message', from: 'alice', text: 'hello room 7' });
  // Emit to one user: bob gets it, alice gets her copy, nobody else.
  bob.say('psst', 'alice');
  assert.deepEqual(await alice.next(), { type: 'message', from: 'bob', text: 'psst', private: true });
  assert.deepEqual(await bob.next(), { type: 'message', from: 'bob', text: 'psst', private: true, to: 'alice' });
  // Carol (room 8) heard none of it: her next message is the sentinel.
  await announce(cc, '8', 'sentinel for 8');
  assert.deepEqual(await carol.next(), { type: 'announcement', text: 'sentinel for 8' });
  // Alice's own line did not come back to her either.
  await announce(ca, '7', 'sentinel for 7');
  assert.deepEqual(await alice.next(), { type: 'announcement', text: 'sentinel for 7' });
  assert.deepEqual(await bob.next(), { type: 'announcement', text: 'sentinel for 7' });

  // An empty message: the app answers the sender alone.
  alice.say('   ');
  assert.deepEqual(await alice.next(), { type: 'error', text: 'empty message' });

  // Bob leaves: the close handler tells the room through the socket API.
  bob.close();
  assert.deepEqual(await alice.next(), { type: 'left', user: 'bob' });
  for (const ws of [alice, carol]) ws.close();
});

test('two people in headless Chromium', { skip: !existsSync(CHROMIUM) && `${CHROMIUM} not installed` }, async () => {
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--disable-quic'],
  });
  try {
    // Two contexts: two cookie jars, two people.
    const pages = [];
    for (const name of ['dora', 'eve']) {
      const context = await browser.newContext({ viewport: { width: 720, height: 420 } });
      const page = await context.newPage();
      await page.goto(`${app}/?room=42`);
      await page.fill('#name', name);
      await page.click('#login');
      await page.locator('#status', { hasText: 'connected' }).waitFor({ timeout: 10000 });
      await page.locator('#log li', { hasText: `you are ${name} in room 42` }).waitFor({ timeout: 10000 });
      pages.push(page);
    }
    const [dora, eve] = pages;
    await dora.locator('#log li', { hasText: 'eve joined' }).waitFor({ timeout: 10000 });

    await dora.fill('#text', 'Hello from Dora');
    await dora.click('#send');
    await eve.locator('#log li', { hasText: 'dora: Hello from Dora' }).waitFor({ timeout: 10000 });

    await eve.fill('#to', 'dora');
    await eve.fill('#text', 'just for you');
    await eve.press('#text', 'Enter');
    await dora.locator('#log li.private', { hasText: 'eve: just for you' }).waitFor({ timeout: 10000 });
    await eve.locator('#log li.private', { hasText: 'eve → dora: just for you' }).waitFor({ timeout: 10000 });
    // Dora's own line is drawn once (the broadcast skips the sender).
    assert.equal(await dora.locator('#log li', { hasText: 'Hello from Dora' }).count(), 1);
  } finally {
    await browser.close();
  }
});
