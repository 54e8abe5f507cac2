// 12. Every front-end in ONE channel, over ws and wss (the built-in TLS), on one node and across
//     two: a pusher-js client (forceTLS over wss), a socket.io-client 4 client (Echo's socket.io
//     wire) and a raw WebSocket client in a custom route's room (examples/chat: room = channel).
//     An HTTP API trigger and a Laravel-style Redis PUBLISH must reach each client once, in its
//     own wire format, correctly decoded (mixed wires once shared an encoding slot and got each
//     other's frames).
//
// The nodes run target/release/examples/chat (it loads RESONANCE_* like `resonance start`).
// The certificate is self-signed, made with the openssl CLI for this run; the clients in this
// process accept it through NODE_TLS_REJECT_UNAUTHORIZED=0 (set below, test-only: pusher-js
// gives no way to pass a CA to its Node transport).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import WebSocket from 'ws';
import { io as sio4 } from 'sio4';
import {
  useCluster, Pusher, pusherSubscribe, ChannelRecorder, track, trigger, laravelPayload, waitUntil, sleep, uid,
  LARAVEL_PREFIX, REPO_ROOT, DEFAULT_WAIT_MS, SETTLE_MS, SYNC_WAIT_MS, withTimeout,
} from '../lib/harness.js';

process.env.NODE_TLS_REJECT_UNAUTHORIZED = '0';
process.removeAllListeners('warning'); // the warning that setting prints, once per process

const CHAT = process.env.RESONANCE_CHAT_BIN || path.join(REPO_ROOT, 'target', 'release', 'examples', 'chat');
const EVENT = 'App\\Events\\OrderShipped';

const h = useCluster();
let dir, tls;

before(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'resonance-cluster-tls-'));
  tls = { cert: path.join(dir, 'cert.pem'), key: path.join(dir, 'key.pem') };
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', tls.key, '-out', tls.cert, '-days', '1',
    '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1'], { stdio: 'ignore' });
  await h.redis();
});

after(() => fs.rmSync(dir, { recursive: true, force: true }));

/** A sink in the shape the harness helpers use: received(event, channel) -> [data]. */
class Sink {
  constructor(label) {
    this.label = label;
    this.items = [];
  }
  toString() {
    return this.label;
  }
  push(event, channel, data) {
    this.items.push({ event, channel, data });
  }
  received(event, channel) {
    return this.items.filter((i) => i.event === event && i.channel === channel).map((i) => i.data);
  }
}

/** pusher-js over ws, or over wss with forceTLS (the REVERB_SCHEME=https setup). */
async function pusherSink(node, channel, secure) {
  const p = track(new Pusher(node.app.key, {
    wsHost: node.host,
    wsPort: node.port,
    wssPort: node.port,
    forceTLS: secure,
    enabledTransports: ['ws'], // pusher-js' transport name for ws and wss
    disableStats: true,
    cluster: 'mt1',
  }));
  p.label = `pusher-js@${node.label}`;
  await waitUntil(() => p.connection.state === 'connected', DEFAULT_WAIT_MS, () => `${p.label} connected over ${secure ? 'wss' : 'ws'} (state ${p.connection.state})`);
  const ch = await pusherSubscribe(p, channel);
  const rec = new ChannelRecorder(ch, channel, `pusher-js@${node.label}`);
  // pusher-js parses `data` when it is JSON: the API sends a JSON string, Laravel an object.
  return { sink: { toString: () => rec.label, received: (e, c) => (c === channel ? rec.received(e, c) : []) }, close: () => p.disconnect() };
}

/** socket.io-client 4 speaking Echo's socket.io wire: 42["subscribe",...] in, 42[event, channel, data] out. */
async function socketioSink(node, channel, secure) {
  const sink = new Sink(`socket.io-client4@${node.label}`);
  const s = sio4(`${secure ? 'https' : 'http'}://${node.host}:${node.port}`, {
    transports: ['websocket'],
    reconnection: false,
    ...(secure ? { ca: fs.readFileSync(tls.cert) } : {}), // engine.io-client verifies on its own
  });
  s.onAny((event, ch, data) => sink.push(event, ch, data));
  await withTimeout(new Promise((resolve, reject) => {
    s.once('connect', resolve);
    s.once('connect_error', reject);
  }), DEFAULT_WAIT_MS, `${sink} connected over ${secure ? 'wss' : 'ws'}`);
  s.emit('subscribe', { channel, auth: {} });
  return { sink, close: () => s.close() };
}

/** A raw WebSocket in the chat room named like the channel: {"event","channel","data"} frames. */
async function rawSink(node, channel, secure) {
  const sink = new Sink(`raw@${node.label}`);
  const ws = new WebSocket(`${secure ? 'wss' : 'ws'}://${node.host}:${node.port}/chat/${channel}?name=raw${node.label}`);
  ws.on('message', (buf) => {
    const m = JSON.parse(buf.toString());
    if (m.event) sink.push(m.event, m.channel, typeof m.data === 'string' ? JSON.parse(m.data) : m.data);
  });
  await withTimeout(new Promise((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('error', reject);
  }), DEFAULT_WAIT_MS, `${sink} connected over ${secure ? 'wss' : 'ws'}`);
  return { sink, close: () => ws.close() };
}

/** Sends probes (through `send(seq)`) until every sink got one. */
async function sync(send, sinks, channel) {
  const deadline = Date.now() + SYNC_WAIT_MS;
  const has = (s) => s.received('probe', channel).length > 0;
  for (let seq = 1; ; seq++) {
    await send(seq);
    const stepEnd = Math.min(deadline, Date.now() + 300);
    while (Date.now() < stepEnd && !sinks.every(has)) await sleep(20);
    if (sinks.every(has)) return;
    if (Date.now() >= deadline) throw new Error(`probes never reached ${sinks.filter((s) => !has(s)).map(String)}`);
  }
}

async function exactlyOnce(sinks, channel, event, data, what) {
  const count = (s) => s.received(event, channel).filter((d) => JSON.stringify(d) === JSON.stringify(data)).length;
  await waitUntil(() => sinks.every((s) => count(s) >= 1), DEFAULT_WAIT_MS,
    () => `${what}: ${event} ${JSON.stringify(data)} at every client (got ${JSON.stringify(sinks.map((s) => [String(s), s.received(event, channel)]))})`);
  await sleep(SETTLE_MS);
  for (const s of sinks) assert.equal(count(s), 1, `${what}: ${s} got it exactly once`);
}

for (const transport of ['ws', 'wss']) {
  for (const count of [1, 2]) {
    test(`${transport} × ${count} node(s): pusher-js, socket.io-client 4 and a raw client in one channel get API triggers and Laravel publishes in their own format`, async () => {
      const secure = transport === 'wss';
      const nodes = [];
      for (let i = 0; i < count; i++) {
        nodes.push(await h.startNode({
          label: `${transport}${count}${'AB'[i]}`,
          bin: CHAT,
          args: (host, port) => [`${host}:${port}`],
          tls: secure ? tls : undefined,
        }));
      }
      const channel = uid('mixed');
      const clients = [];
      try {
        // Each front-end on each node (with one node, all on it). The raw clients join first:
        // the chat announces its user list to the room as a raw message, which the Pusher wire
        // passes on as-is, and pusher-js throws on a frame without "event".
        const raws = [];
        for (const node of nodes) raws.push(await rawSink(node, channel, secure));
        for (const node of nodes) {
          clients.push(await pusherSink(node, channel, secure));
          clients.push(await socketioSink(node, channel, secure));
        }
        clients.push(...raws);
        const sinks = clients.map((c) => c.sink);
        const last = nodes[nodes.length - 1];
        await sync((seq) => trigger(last, channel, 'probe', { probe: seq }), sinks, channel);

        // An HTTP API trigger through the first node (the second reaches it across Redis).
        const big = 'x'.repeat(9000); // over one TCP segment, several frames of each wire
        await trigger(nodes[0], channel, EVENT, { id: 1, text: 'héllo "quoted"', big });
        await exactlyOnce(sinks, channel, EVENT, { id: 1, text: 'héllo "quoted"', big }, `API trigger (${transport}, ${count} node(s))`);

        // A Laravel broadcast PUBLISHed to Redis (every node ingests it for its own clients).
        const redis = await h.redis();
        await redis.publish(`${LARAVEL_PREFIX}${channel}`, laravelPayload(EVENT, { id: 2, order: { total: 10 } }));
        await exactlyOnce(sinks, channel, EVENT, { id: 2, order: { total: 10 } }, `Laravel publish (${transport}, ${count} node(s))`);
      } finally {
        for (const c of clients) c.close();
        await Promise.all(nodes.map((n) => n.stop()));
      }
    });
  }
}
