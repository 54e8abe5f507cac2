// 1. connect: pusher-js reaches "connected", gets a well-formed socket_id, two connections differ.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { useHarness, connectedPusher, RawClient } from '../lib/harness.js';

const h = useHarness();
let server;
before(async () => {
  server = await h.startServer();
});

test('GET /up answers 200 {"status":"ok"}', async () => {
  const res = await fetch(`${server.httpUrl}/up`);
  assert.equal(res.status, 200);
  assert.deepEqual(await res.json(), { status: 'ok' });
});

test('pusher-js reaches "connected" with a socket_id like N.N', async () => {
  const p = await connectedPusher(server);
  assert.equal(p.connection.state, 'connected');
  assert.match(p.connection.socket_id, /^\d+\.\d+$/);
});

test('two connections get different socket ids', async () => {
  const [a, b] = await Promise.all([connectedPusher(server), connectedPusher(server)]);
  assert.match(a.connection.socket_id, /^\d+\.\d+$/);
  assert.match(b.connection.socket_id, /^\d+\.\d+$/);
  assert.notEqual(a.connection.socket_id, b.connection.socket_id);
});

test('connection_established carries string-encoded data with socket_id and activity_timeout', async () => {
  const c = await RawClient.open(server);
  const m = await c.established();
  assert.equal(typeof m.data, 'string', 'data must be a JSON-encoded string');
  assert.match(m.parsed.socket_id, /^\d+\.\d+$/);
  assert.equal(m.parsed.activity_timeout, 120, 'default activity_timeout is 120');
});
