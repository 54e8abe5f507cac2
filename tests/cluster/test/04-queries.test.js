// 4. HTTP API queries are cluster-wide and identical from every node:
//    GET /channels (filter_by_prefix, info=subscription_count / user_count),
//    GET /channels/{name}?info=..., GET /channels/{name}/users.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import {
  useCluster, RawClient, connectedPusher, pusherSubscribe, api, channelInfo, presenceUserIds, waitAllNodes, uid, QUERY_TIMEOUT_MS,
} from '../lib/harness.js';

const h = useCluster();
let A, B, C, nodes;

before(async () => {
  [A, B, C] = await h.startCluster(3);
  nodes = [A, B, C];
});

/** GET on every node in parallel; returns { A: json, B: json, C: json } after asserting 200s. */
async function onEveryNode(apiPath, query) {
  const out = {};
  await Promise.all(
    nodes.map(async (n) => {
      const r = await api(n, 'GET', apiPath, { query });
      assert.equal(r.status, 200, `${n} GET ${apiPath} ${JSON.stringify(query || {})}: ${r.status} ${r.text}`);
      out[n.label] = r.json;
    }),
  );
  return out;
}

test('channel, presence and users queries count subscribers on all nodes, identically from every node', async () => {
  const tag = uid('q');
  const pub = `${tag}-news`;
  const priv = `private-${tag}-orders`;
  const pres = `presence-${tag}-room`;

  // public: 1 on A, 2 on B, 1 on C (one of them pusher-js) -> 4
  const subsPub = [[A, 1], [B, 2], [C, 1]];
  for (const [n, k] of subsPub)
    for (let i = 0; i < k; i++) {
      const r = await RawClient.connect(n, { label: `pub@${n.label}${i}` });
      await r.subscribeChannel(pub);
    }
  const pjPub = await connectedPusher(C, { user: 90 });
  await pusherSubscribe(pjPub, pub);
  // private: 1 on B, 1 on C -> 2
  for (const n of [B, C]) {
    const r = await RawClient.connect(n, { label: `priv@${n.label}` });
    await r.subscribeChannel(priv);
  }
  // presence: user 1 on A and B (2 connections), user 2 on C, user 3 (pusher-js) on B -> 3 users, 4 connections
  for (const [n, user] of [[A, 1], [B, 1], [C, 2]]) {
    const r = await RawClient.connect(n, { label: `u${user}@${n.label}` });
    await r.subscribePresence(pres, user);
  }
  const pj3 = await connectedPusher(B, { user: 3 });
  await pusherSubscribe(pj3, pres);

  // per-channel info, waiting for the state to converge, then identical on every node
  await waitAllNodes(nodes, (n) => channelInfo(n, pub, 'subscription_count'), { occupied: true, subscription_count: 5 }, 5000, `${pub} info`);
  await waitAllNodes(nodes, (n) => channelInfo(n, priv, 'subscription_count'), { occupied: true, subscription_count: 2 }, 5000, `${priv} info`);
  await waitAllNodes(nodes, (n) => channelInfo(n, pres, 'subscription_count,user_count'), { occupied: true, subscription_count: 4, user_count: 3 }, 5000, `${pres} info`);
  await waitAllNodes(nodes, (n) => presenceUserIds(n, pres), ['1', '2', '3'], 5000, `${pres} users`);

  const usersJson = await onEveryNode(`/channels/${pres}/users`);
  for (const n of nodes) {
    const ids = usersJson[n.label].users.map((u) => String(u.id));
    assert.equal(ids.length, 3, `${n}: each user once in /users (${JSON.stringify(usersJson[n.label])})`);
  }

  // GET /channels with a prefix filter + subscription_count
  const all = await onEveryNode('/channels', { filter_by_prefix: tag, info: 'subscription_count' });
  for (const n of nodes) assert.deepEqual(all[n.label], { channels: { [pub]: { subscription_count: 5 } } }, `${n}: /channels?filter_by_prefix=${tag}`);

  const privs = await onEveryNode('/channels', { filter_by_prefix: `private-${tag}`, info: 'subscription_count' });
  for (const n of nodes) assert.deepEqual(privs[n.label], { channels: { [priv]: { subscription_count: 2 } } }, `${n}: private channels`);

  const presList = await onEveryNode('/channels', { filter_by_prefix: `presence-${tag}`, info: 'user_count' });
  for (const n of nodes) assert.deepEqual(presList[n.label], { channels: { [pres]: { user_count: 3 } } }, `${n}: presence channels with user_count`);

  const presBoth = await onEveryNode('/channels', { filter_by_prefix: `presence-${tag}`, info: 'user_count,subscription_count' });
  for (const n of nodes) assert.deepEqual(presBoth[n.label], { channels: { [pres]: { user_count: 3, subscription_count: 4 } } }, `${n}: presence channels with both counts`);

  // unfiltered /channels lists our channels on every node (other tests' channels may be there too)
  const unfiltered = await onEveryNode('/channels');
  for (const n of nodes)
    for (const c of [pub, priv, pres]) assert.ok(c in unfiltered[n.label].channels, `${n}: ${c} in unfiltered /channels (${JSON.stringify(unfiltered[n.label])})`);

  // an unknown channel is unoccupied everywhere
  const none = `${tag}-nobody`;
  const empty = await onEveryNode(`/channels/${none}`, { info: 'subscription_count' });
  for (const n of nodes) assert.equal(empty[n.label].occupied, false, `${n}: ${none} occupied`);
});

test('queries follow departures on any node, identically from every node', async () => {
  const tag = uid('dep');
  const pres = `presence-${tag}`;
  const pub = `${tag}-pub`;
  const clients = {};
  for (const [n, user] of [[A, 1], [B, 1], [B, 2], [C, 3]]) {
    const r = await RawClient.connect(n, { label: `u${user}@${n.label}` });
    await r.subscribePresence(pres, user);
    await r.subscribeChannel(pub);
    clients[`${user}${n.label}`] = r;
  }
  await waitAllNodes(nodes, (n) => channelInfo(n, pres, 'subscription_count,user_count'), { occupied: true, subscription_count: 4, user_count: 3 }, 5000, 'initial presence info');
  await waitAllNodes(nodes, (n) => channelInfo(n, pub, 'subscription_count'), { occupied: true, subscription_count: 4 }, 5000, 'initial public info');

  clients['1A'].close(); // user 1 still on B
  await waitAllNodes(nodes, (n) => channelInfo(n, pres, 'subscription_count,user_count'), { occupied: true, subscription_count: 3, user_count: 3 }, 5000, 'after user 1 left A');
  await waitAllNodes(nodes, (n) => channelInfo(n, pub, 'subscription_count'), { occupied: true, subscription_count: 3 }, 5000, 'public after a close on A');

  clients['1B'].unsubscribe(pres); // user 1 gone
  await waitAllNodes(nodes, (n) => presenceUserIds(n, pres), ['2', '3'], 5000, 'users after user 1 left B');
  await waitAllNodes(nodes, (n) => api(n, 'GET', '/channels', { query: { filter_by_prefix: pres, info: 'user_count' } }).then((r) => r.json), { channels: { [pres]: { user_count: 2 } } }, 5000, '/channels user_count');

  clients['2B'].close();
  clients['3C'].close();
  clients['1B'].close();
  await waitAllNodes(nodes, (n) => channelInfo(n, pres, 'subscription_count,user_count'), { occupied: false, subscription_count: 0, user_count: 0 }, 5000, 'empty presence channel');
  await waitAllNodes(nodes, (n) => api(n, 'GET', '/channels', { query: { filter_by_prefix: tag } }).then((r) => r.json), { channels: {} }, 5000, 'no channel left');
});

test('cluster queries with every node alive answer well within RESONANCE_QUERY_TIMEOUT', async () => {
  const channel = uid('fast');
  const r = await RawClient.connect(B, { label: 'raw@B' });
  await r.subscribeChannel(channel);
  for (const n of nodes) {
    const times = [];
    for (let i = 0; i < 5; i++) {
      const res = await api(n, 'GET', `/channels/${channel}`, { query: { info: 'subscription_count' } });
      assert.equal(res.status, 200, res.text);
      times.push(res.ms);
    }
    const median = [...times].sort((a, b) => a - b)[2];
    assert.ok(median < QUERY_TIMEOUT_MS / 2, `${n}: median query time ${median} ms (all: ${times}) should not wait for the ${QUERY_TIMEOUT_MS} ms query timeout when every node answers`);
  }
});

test('/users on a non-presence channel is 400 on every node; user_count without presence prefix is 400', async () => {
  for (const n of nodes) {
    const r = await api(n, 'GET', `/channels/${uid('pub')}/users`);
    assert.equal(r.status, 400, `${n}: ${r.text}`);
    const u = await api(n, 'GET', '/channels', { query: { info: 'user_count' } });
    assert.equal(u.status, 400, `${n}: ${u.text}`);
  }
});
