// Webhook receiver for the cluster suite: a Python process (tests/cluster/lib/webhook_receiver.py)
// that validates every request with the Python `pusher` SDK's validate_webhook. Started on a free
// port, stoppable (SIGKILL by pid) and restartable on the same port (a target that is down).
// Uses the venv of the Python suite (target/pyvenv), creating it when missing.

import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { REPO_ROOT, freePort, waitUntil, withTimeout } from '../../common/harness-core.js';

const VENV = path.join(REPO_ROOT, 'target', 'pyvenv');
const PYTHON = process.env.RESONANCE_PYTHON || path.join(VENV, 'bin', 'python');
const SCRIPT = path.join(REPO_ROOT, 'tests', 'cluster', 'lib', 'webhook_receiver.py');

function ensurePython() {
  if (fs.existsSync(PYTHON) && spawnSync(PYTHON, ['-c', 'import pusher']).status === 0) return;
  const req = path.join(REPO_ROOT, 'tests', 'py', 'requirements.txt');
  let r = spawnSync('python3', ['-m', 'venv', VENV], { stdio: 'inherit' });
  if (r.status === 0) r = spawnSync(path.join(VENV, 'bin', 'pip'), ['install', '-q', '-r', req], { stdio: 'inherit' });
  if (r.status !== 0) throw new Error(`cannot set up the Python venv with the pusher SDK in ${VENV}`);
}

export class WebhookReceiver {
  static async start(app) {
    ensurePython();
    const r = new WebhookReceiver(app, await freePort());
    await r.spawn();
    return r;
  }

  constructor(app, port) {
    this.app = app;
    this.port = port;
    this.url = `http://127.0.0.1:${port}/pusher/webhook`;
    this.proc = null;
  }

  async spawn() {
    const proc = spawn(PYTHON, [SCRIPT, String(this.port), this.app.id, this.app.key, this.app.secret], { stdio: ['ignore', 'pipe', 'pipe'] });
    this.proc = proc;
    let out = '';
    proc.stdout.on('data', (b) => (out += b));
    proc.stderr.on('data', (b) => (out += b));
    process.once('exit', () => proc.exitCode === null && proc.kill('SIGKILL'));
    await waitUntil(() => out.includes('listening') || proc.exitCode !== null, 10000, () => `webhook receiver listening on ${this.port} (output: ${out})`);
    if (proc.exitCode !== null) throw new Error(`webhook receiver exited: ${out}`);
  }

  /** SIGKILL: the target refuses connections until restart(). */
  async kill() {
    const proc = this.proc;
    if (!proc || proc.exitCode !== null) return;
    const exited = new Promise((resolve) => proc.once('exit', resolve));
    proc.kill('SIGKILL');
    await withTimeout(exited, 5000, 'webhook receiver exit');
  }

  restart() {
    return this.spawn();
  }

  async log() {
    const res = await fetch(`http://127.0.0.1:${this.port}/log`, { signal: AbortSignal.timeout(3000) });
    return res.json();
  }

  /** Answer webhooks with `status` from now on. */
  async answerWith(status) {
    await fetch(`http://127.0.0.1:${this.port}/control`, { method: 'POST', body: JSON.stringify({ status }), signal: AbortSignal.timeout(3000) });
  }

  /** Every valid event received so far, each with `at_ms` (when received). */
  async events() {
    const log = await this.log();
    if (log.invalid.length) throw new Error(`webhook requests failed validation: ${JSON.stringify(log.invalid)}`);
    return log.valid.flatMap((req) => req.events.map((e) => ({ ...e, at_ms: req.at_ms })));
  }

  /** Waits for an event matching `match` (name and fields); resolves it. */
  async waitFor(match, ms = 10000) {
    let found;
    let seen = [];
    await waitUntil(
      async () => {
        seen = await this.events();
        found = seen.find((e) => Object.entries(match).every(([k, v]) => e[k] === v));
        return Boolean(found);
      },
      ms,
      () => `webhook ${JSON.stringify(match)} (received: ${JSON.stringify(seen.map(({ at_ms, ...e }) => e))})`,
      50,
    );
    return found;
  }

  /** How many received events match. */
  async count(match) {
    return (await this.events()).filter((e) => Object.entries(match).every(([k, v]) => e[k] === v)).length;
  }

  async stop() {
    await this.kill();
  }
}

/** Environment that points a node's (first) app at the receiver. */
export const webhookEnv = (receiver, events) => ({
  RESONANCE_APP_WEBHOOK_URL: receiver.url,
  ...(events ? { RESONANCE_APP_WEBHOOK_EVENTS: events } : {}),
});
