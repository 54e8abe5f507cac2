// A minimal handler app for the benchmark: checks the signature and
// answers every message with {"actions":[{"send": data}]} (an echo through
// the app). Usage: node handler.mjs PORT SECRET
import http from 'node:http';
import { createHmac, timingSafeEqual } from 'node:crypto';

const [port, secret] = [Number(process.argv[2]), process.argv[3]];
const server = http.createServer({ noDelay: true, keepAlive: true }, (req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    const body = Buffer.concat(chunks);
    const mac = createHmac('sha256', secret).update(body).digest();
    const given = Buffer.from(String(req.headers['x-resonance-signature'] || ''), 'hex');
    if (given.length !== mac.length || !timingSafeEqual(given, mac)) {
      res.writeHead(401).end();
      return;
    }
    const event = JSON.parse(body);
    const answer = event.event === 'message' ? { actions: [{ send: event.data }] } : {};
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(answer));
  });
});
server.keepAliveTimeout = 60000;
server.listen(port, '127.0.0.1', () => console.log('ready'));
