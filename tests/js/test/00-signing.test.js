// Self-check of the harness' signing helpers against the Pusher documentation's test vectors.
// If these fail, every other result in the suite is suspect.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { signApiRequest, signChannel, md5Hex } from '../lib/harness.js';

const app = { id: '3', key: '278d425bdf160c739803', secret: '7ad3773142a6692b25b8' };

test('channel auth signature matches the Pusher docs vector', () => {
  assert.equal(
    signChannel(app, '1234.1234', 'private-foobar'),
    '278d425bdf160c739803:58df8b0c36d6982b82c3ecf6b4662e34fe8c25bba48f5369f135bf843651c3a4',
  );
});

test('HTTP API request signature matches the Pusher docs vector', () => {
  const body = '{"name":"foo","channels":["project-3"],"data":"{\\"some\\":\\"data\\"}"}';
  assert.equal(md5Hex(body), 'ec365a775a4cd0599faeb73354201b6f');
  const q = signApiRequest(app, 'POST', '/apps/3/events', {}, body, 1353088179);
  assert.equal(q.body_md5, 'ec365a775a4cd0599faeb73354201b6f');
  assert.equal(q.auth_signature, 'da454824c97ba181a32ccc17a72625ba02771f50b50e1e7430e47a1f3f457e6c');
});
