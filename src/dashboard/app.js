// The Resonance dashboard page. No framework, no build step: served from the
// binary. Every value from the server is written with textContent (channel
// names, member info and event data come from clients and must never be
// parsed as HTML).
'use strict';

const $ = (id) => document.getElementById(id);
const HISTORY = 300;
const MAX_LOG_ROWS = 500;

let csrf = null;
let apps = [];
let socket = null;
let retry = 0;
let retryTimer = null;
let history = [];

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}

function fmt(n) {
  if (n === null || n === undefined) return '–';
  return Number(n).toLocaleString('en-US');
}

async function call(method, path, body) {
  const headers = { 'Content-Type': 'application/json' };
  if (csrf) headers['X-Dashboard-Csrf'] = csrf;
  const res = await fetch(path, {
    method, headers, credentials: 'same-origin',
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  let data = null;
  try { data = await res.json(); } catch (_) { data = null; }
  return { ok: res.ok, status: res.status, data };
}

function showLogin(message) {
  closeSocket();
  $('board').hidden = true;
  $('bar').hidden = true;
  $('login').hidden = false;
  $('login-error').textContent = message || '';
}

function showBoard(session) {
  csrf = session.csrf;
  apps = session.apps || [];
  const select = $('app');
  select.replaceChildren(...apps.map((a) => {
    const o = el('option', `${a.id} (${a.key})`);
    o.value = a.id;
    return o;
  }));
  const wanted = new URLSearchParams(location.hash.slice(1)).get('app');
  if (wanted && apps.some((a) => a.id === wanted)) select.value = wanted;
  $('login').hidden = true;
  $('bar').hidden = false;
  $('board').hidden = false;
  connect();
}

function closeSocket() {
  clearTimeout(retryTimer);
  if (socket) {
    socket.onclose = null;
    socket.close();
    socket = null;
  }
}

function setStatus(text, cls) {
  const s = $('status');
  s.textContent = text;
  s.className = cls || '';
}

function connect() {
  closeSocket();
  history = [];
  $('log').replaceChildren();
  const app = $('app').value;
  const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
  socket = new WebSocket(`${scheme}://${location.host}/dashboard/live?app=${encodeURIComponent(app)}`);
  setStatus('connecting…');
  socket.onopen = () => { retry = 0; setStatus('live', 'live'); };
  socket.onmessage = (m) => {
    let msg;
    try { msg = JSON.parse(m.data); } catch (_) { return; }
    if (msg.type === 'stats') render(msg);
    else if (msg.type === 'log') appendLog(msg);
  };
  socket.onclose = (e) => {
    socket = null;
    if (e.code === 4001) { showLogin('Your session ended; log in again.'); return; }
    setStatus('disconnected — retrying', 'down');
    retry = Math.min(retry + 1, 6);
    retryTimer = setTimeout(connect, 500 * 2 ** retry);
  };
}

function render(s) {
  $('node-note').textContent = `(this node; up ${Math.round(s.server.uptime_s / 60)} min, v${s.server.version})`;
  $('connections').textContent = fmt(s.connections);
  $('channel-count').textContent = fmt(s.channel_count);
  $('subscriptions').textContent = fmt(s.subscriptions);
  $('api-total').textContent = fmt(s.api_calls_total);
  $('api-errors').textContent = fmt(s.api_errors_total);
  if (s.full_history) history = s.history.slice(); else history.push(...s.history);
  if (history.length > HISTORY) history = history.slice(history.length - HISTORY);
  const last = history[history.length - 1] || [0, 0, 0, 0, 0];
  $('rate-in').textContent = fmt(last[1]);
  $('rate-out').textContent = fmt(last[2]);
  $('rate-api').textContent = fmt(last[3]);
  drawChart();

  const wh = s.webhooks;
  $('webhooks-tile').hidden = wh === null || wh === undefined;
  if (wh !== null && wh !== undefined) $('webhooks').textContent = typeof wh === 'object' ? fmt(wh.queued) : fmt(wh);

  $('channels').replaceChildren(...(s.channels.length ? s.channels.map((c) => {
    const tr = el('tr');
    tr.append(el('td', c.name), el('td', fmt(c.subscribers), 'num'), el('td', c.users === null ? '' : fmt(c.users), 'num'));
    return tr;
  }) : [(() => { const tr = el('tr'); const td = el('td', 'No occupied channels.', 'muted'); td.colSpan = 3; tr.append(td); return tr; })()]));
  if (s.channel_count > s.channels.length) {
    const tr = el('tr'); const td = el('td', `… and ${fmt(s.channel_count - s.channels.length)} more`, 'muted'); td.colSpan = 3; tr.append(td);
    $('channels').append(tr);
  }

  const presence = $('presence');
  if (!s.presence.length) presence.replaceChildren(el('p', 'No presence channels.', 'muted'));
  else presence.replaceChildren(...s.presence.map((p) => {
    const box = el('div');
    box.append(el('h3', `${p.channel} — ${p.count} member${p.count === 1 ? '' : 's'}`));
    const ul = el('ul');
    ul.append(...p.members.map((m) => el('li', m.info === null ? m.id : `${m.id} ${JSON.stringify(m.info)}`)));
    box.append(ul);
    return box;
  }));

  const c = s.cluster;
  $('adapter').textContent = `Adapter: ${c.adapter} — ${c.healthy ? 'healthy' : 'UNHEALTHY (serving local clients only)'}`;
  $('adapter').className = c.healthy ? '' : 'dead';
  $('nodes').replaceChildren(...(c.nodes.length ? c.nodes.map((n) => {
    const seen = n.last_seen_ms === null ? '' : `, heard from ${(n.last_seen_ms / 1000).toFixed(1)} s ago`;
    return el('li', `${n.id}${n.this ? ' (this node)' : ''}: ${n.alive ? 'alive' : 'not heartbeating'}${seen}`, n.alive ? '' : 'dead');
  }) : [el('li', 'single node (local adapter)', 'muted')]));
  const errors = Object.entries(s.errors);
  $('errors').replaceChildren(...(errors.length ? errors.map(([k, v]) => el('li', `${k}: ${fmt(v)}`)) : [el('li', 'none', 'muted')]));
}

function drawChart() {
  const max = Math.max(1, ...history.map((p) => Math.max(p[1], p[2])));
  const pts = (i) => history.map((p, x) => `${(HISTORY - history.length + x).toFixed(0)},${(100 - (p[i] / max) * 96).toFixed(1)}`).join(' ');
  $('line-out').setAttribute('points', pts(2));
  $('line-in').setAttribute('points', pts(1));
  $('chart-max').textContent = `(scale: 0–${fmt(max)}/s)`;
  const last = history[history.length - 1];
  $('chart').setAttribute('aria-label', last
    ? `Peak ${fmt(max)} messages per second in the last ${history.length} seconds; now ${fmt(last[2])} out and ${fmt(last[1])} in per second`
    : 'no data yet');
}

function matches(tr) {
  const f = $('filter').value.trim().toLowerCase();
  return !f || tr.dataset.text.includes(f);
}

function appendLog(msg) {
  if ($('pause').checked) return;
  const body = $('log');
  const rows = msg.entries.map((e) => {
    const tr = el('tr');
    const time = new Date(e.at).toISOString().slice(11, 23);
    const details = [e.socket_id ? `socket ${e.socket_id}` : '', e.detail || ''].filter(Boolean).join(' · ');
    tr.append(el('td', time), el('td', e.kind), el('td', e.channel || ''), el('td', e.event || ''), el('td', details));
    tr.dataset.text = [e.kind, e.channel, e.event, e.socket_id, e.detail].filter(Boolean).join(' ').toLowerCase();
    tr.hidden = !matches(tr);
    return tr;
  });
  if (msg.skipped) {
    const tr = el('tr');
    const td = el('td', `${fmt(msg.skipped)} entries skipped (too many to show)`, 'muted');
    td.colSpan = 5;
    tr.append(td);
    tr.dataset.text = '';
    rows.push(tr);
  }
  body.prepend(...rows.reverse());
  while (body.rows.length > MAX_LOG_ROWS) body.deleteRow(-1);
}

document.addEventListener('DOMContentLoaded', async () => {
  $('login-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const body = { key: $('key').value, secret: $('secret').value, token: $('token').value };
    const r = await call('POST', '/dashboard/login', body);
    $('secret').value = '';
    $('token').value = '';
    if (r.ok) showBoard(r.data);
    else showLogin((r.data && r.data.error) || `login failed (${r.status})`);
  });
  $('logout').addEventListener('click', async () => {
    await call('POST', '/dashboard/logout');
    csrf = null;
    showLogin('Logged out.');
  });
  $('app').addEventListener('change', () => {
    location.hash = `app=${encodeURIComponent($('app').value)}`;
    connect();
  });
  $('filter').addEventListener('input', () => {
    for (const tr of $('log').rows) tr.hidden = !matches(tr);
  });
  $('clear').addEventListener('click', () => $('log').replaceChildren());
  $('send-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const out = $('send-result');
    out.textContent = 'sending…';
    out.className = '';
    const app = encodeURIComponent($('app').value);
    const r = await call('POST', `/dashboard/event?app=${app}`, {
      channel: $('send-channel').value.trim(),
      event: $('send-event').value.trim(),
      data: $('send-data').value,
    });
    out.textContent = r.ok ? 'Sent.' : `Refused: ${(r.data && r.data.error) || r.status}`;
    out.className = r.ok ? 'ok' : 'error';
  });
  const r = await call('GET', '/dashboard/session');
  if (r.ok) showBoard(r.data); else showLogin('');
});
