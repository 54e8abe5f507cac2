// 12. apps from PostgreSQL: an app added with `resonance apps add --database` is served
// without a restart (a pusher-js client of it connects), disabling it closes that client
// with 4003, deleting an app closes its client with 4001. Uses the machine's PostgreSQL
// (127.0.0.1:5432, user postgres) with a throwaway database; skipped when it is absent.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { useHarness, connectedPusher, api, waitUntil, BIN, uid, withTimeout } from '../lib/harness.js';

const h = useHarness();
const DB = `resonance_js_${process.pid}_${Date.now()}`;
const URL = `postgres://postgres@127.0.0.1:5432/${DB}`;
const psql = (db, sql) =>
  execFileSync('psql', ['-h', '127.0.0.1', '-U', 'postgres', '-d', db, '-v', 'ON_ERROR_STOP=1', '-qAtc', sql], {
    stdio: ['ignore', 'pipe', 'pipe'],
  }).toString();
const apps = (...args) => execFileSync(BIN, ['apps', '--database', URL, ...args], { stdio: ['ignore', 'pipe', 'pipe'] }).toString();

let available = true;
try {
  psql('postgres', 'SELECT 1');
} catch {
  available = false;
}
const skip = available ? false : 'no PostgreSQL at 127.0.0.1:5432 (or no psql)';

let server;
before(async () => {
  if (!available) return;
  psql('postgres', `CREATE DATABASE ${DB}`);
  apps('migrate');
  server = await h.startServer({ env: { RESONANCE_APPS_DATABASE: URL } });
});

after(async () => {
  if (!available) return;
  for (const s of h.servers) await s.stop();
  psql('postgres', `DROP DATABASE IF EXISTS ${DB} WITH (FORCE)`);
});

/** Adds an app with the CLI and waits until the server serves it (its signed API answers). */
async function addApp(id) {
  const app = { id, key: `db-key-${id}-${uid()}`, secret: `db-secret-${id}-long` };
  const out = apps('add', '--id', app.id, '--key', app.key, '--secret', app.secret);
  assert.match(out, new RegExp(`PUSHER_APP_KEY=${app.key}`));
  await waitUntil(async () => (await api(server, 'GET', '/channels', { app })).status === 200, 10_000, `app ${id} served`);
  return app;
}

function closedWith(pusher) {
  return withTimeout(
    new Promise((resolve) => pusher.connection.bind('error', (e) => e?.data?.code && resolve(e.data.code))),
    10_000,
    'a pusher:error with a close code',
  );
}

test('an app added in the database serves a pusher-js client; disabling it closes with 4003', { skip }, async () => {
  const app = await addApp('501');
  const p = await connectedPusher(server, undefined, { key: app.key });
  assert.equal(p.connection.state, 'connected');
  const code = closedWith(p);
  psql(DB, `UPDATE resonance_apps SET enabled = FALSE WHERE id = '501'`);
  assert.equal(await code, 4003);
});

test('deleting an app closes its pusher-js clients with 4001; the default app is untouched', { skip }, async () => {
  const app = await addApp('502');
  const p = await connectedPusher(server, undefined, { key: app.key });
  const other = await connectedPusher(server);
  const code = closedWith(p);
  assert.match(apps('remove', '502'), /removed app 502/);
  assert.equal(await code, 4001);
  assert.equal(other.connection.state, 'connected');
  assert.match(apps('list'), /db-key-501/);
});
