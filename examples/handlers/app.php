<?php
// The classic chat of Ratchet / Swoole / laravel-swoole, with Resonance
// holding the sockets: rooms by path (/chat-rooms/{id}), the user from a
// session cookie, emit to one, broadcast except the sender.
//
//   RESONANCE_SECRET=resonance-secret php -S 127.0.0.1:8000 examples/handlers/app.php
//   resonance start --config examples/handlers/resonance.toml
//   open http://127.0.0.1:8000/
//
// Settings (environment): RESONANCE_SECRET (the app secret: checks our
// calls, signs the login cookie and the socket API), RESONANCE_KEY and
// RESONANCE_APP_ID (for the socket API), RESONANCE_WS (where browsers
// connect, default ws://127.0.0.1:6001), RESONANCE_API (where this app
// calls the API, default http://127.0.0.1:6001).

$secret = getenv('RESONANCE_SECRET') ?: 'resonance-secret';
$key = getenv('RESONANCE_KEY') ?: 'resonance-key';
$appId = getenv('RESONANCE_APP_ID') ?: '100000';
$wsBase = getenv('RESONANCE_WS') ?: 'ws://127.0.0.1:6001';
$apiBase = getenv('RESONANCE_API') ?: 'http://127.0.0.1:6001';

$path = parse_url($_SERVER['REQUEST_URI'], PHP_URL_PATH);

// --- the session: a signed cookie "name|hmac" (a real app uses its framework's) ---

function session_cookie(string $name, string $secret): string {
    return $name . '|' . hash_hmac('sha256', $name, $secret);
}

function user_from_cookie(string $cookie, string $secret): ?string {
    $parts = explode('|', $cookie, 2);
    if (count($parts) !== 2) return null;
    [$name, $mac] = $parts;
    return hash_equals(hash_hmac('sha256', $name, $secret), $mac) ? $name : null;
}

function json_out($value, int $status = 200): void {
    http_response_code($status);
    header('Content-Type: application/json');
    echo json_encode($value, JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE);
}

// --- the socket API: Pusher-style signed POSTs to Resonance ---

function resonance_api(string $path, array $body): array {
    global $key, $secret, $appId, $apiBase;
    $path = "/apps/$appId$path";
    $json = json_encode($body, JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE);
    $query = [
        'auth_key' => $key,
        'auth_timestamp' => (string) time(),
        'auth_version' => '1.0',
        'body_md5' => md5($json),
    ];
    ksort($query);
    $q = http_build_query($query);
    $q .= '&auth_signature=' . hash_hmac('sha256', "POST\n$path\n$q", $secret);
    $context = stream_context_create(['http' => [
        'method' => 'POST',
        'header' => "Content-Type: application/json\r\n",
        'content' => $json,
        'ignore_errors' => true,
        'timeout' => 5,
    ]]);
    $answer = @file_get_contents("$apiBase$path?$q", false, $context);
    $status = isset($http_response_header[0]) ? (int) explode(' ', $http_response_header[0])[1] : 0;
    return [$status, $answer === false ? null : json_decode($answer, true)];
}

// --- the handler: Resonance POSTs connect / message / close here ---

if ($path === '/socket/chat' && $_SERVER['REQUEST_METHOD'] === 'POST') {
    $body = file_get_contents('php://input');
    $expected = hash_hmac('sha256', $body, $secret);
    if (!hash_equals($expected, $_SERVER['HTTP_X_RESONANCE_SIGNATURE'] ?? '')) {
        json_out(['error' => 'bad signature'], 401);
        return;
    }
    $event = json_decode($body, true);
    $room = 'chat-rooms.' . $event['params']['id'];
    switch ($event['event']) {
        case 'connect':
            // The browser's cookies came with the call: who is this?
            $user = user_from_cookie($_COOKIE['chat_session'] ?? '', $secret);
            if ($user === null) {
                json_out(['error' => 'sign in first'], 401);
                return;
            }
            json_out([
                'user_id' => $user,
                'actions' => [
                    // emit to this socket only
                    ['send' => ['type' => 'welcome', 'room' => $event['params']['id'], 'you' => $user]],
                    // tell the others in the room (the socket is in it already)
                    ['broadcast' => ['room' => $room, 'data' => ['type' => 'joined', 'user' => $user], 'except_self' => true]],
                ],
            ]);
            return;
        case 'message':
            $msg = json_decode($event['data'], true);
            $text = trim((string) ($msg['text'] ?? ''));
            if ($text === '') {
                json_out(['actions' => [['send' => ['type' => 'error', 'text' => 'empty message']]]]);
                return;
            }
            $line = ['type' => 'message', 'from' => $event['user_id'], 'text' => mb_substr($text, 0, 500)];
            if (!empty($msg['to'])) {
                // emit to one user (all their tabs), and a copy to the sender
                $line['private'] = true;
                json_out(['actions' => [
                    ['to_user' => ['user_id' => (string) $msg['to'], 'data' => $line]],
                    ['send' => $line + ['to' => (string) $msg['to']]],
                ]]);
                return;
            }
            // broadcast to the room, except the sender (who drew it already)
            json_out(['actions' => [
                ['broadcast' => ['room' => $room, 'data' => $line, 'except_self' => true]],
            ]]);
            return;
        case 'close':
            // The socket has left its rooms; tell those still there.
            if ($event['user_id'] !== null) {
                resonance_api('/rooms/' . rawurlencode($room) . '/broadcast', [
                    'data' => ['type' => 'left', 'user' => $event['user_id']],
                ]);
            }
            json_out([]);
            return;
    }
    json_out([]);
    return;
}

// --- an announcement from "elsewhere" (a job, an admin): the socket API ---

if ($path === '/announce' && $_SERVER['REQUEST_METHOD'] === 'POST') {
    if (user_from_cookie($_COOKIE['chat_session'] ?? '', $secret) === null) {
        json_out(['error' => 'sign in first'], 401);
        return;
    }
    $room = 'chat-rooms.' . preg_replace('/[^A-Za-z0-9_-]/', '', $_POST['room'] ?? '');
    [$status, $answer] = resonance_api('/rooms/' . rawurlencode($room) . '/broadcast', [
        'data' => ['type' => 'announcement', 'text' => (string) ($_POST['text'] ?? '')],
    ]);
    json_out(['status' => $status, 'answer' => $answer], $status === 200 ? 200 : 502);
    return;
}

// --- the pages: sign in, then the room ---

if ($path === '/login' && $_SERVER['REQUEST_METHOD'] === 'POST') {
    $name = preg_replace('/[^A-Za-z0-9_-]/', '', $_POST['name'] ?? '');
    if ($name === '') {
        header('Location: /');
        return;
    }
    setcookie('chat_session', session_cookie($name, $secret), ['path' => '/', 'httponly' => true, 'samesite' => 'Lax']);
    $room = preg_replace('/[^A-Za-z0-9_-]/', '', $_POST['room'] ?? 'lobby') ?: 'lobby';
    header("Location: /?room=$room");
    return;
}

if ($path !== '/') {
    http_response_code(404);
    echo "not found\n";
    return;
}

$user = user_from_cookie($_COOKIE['chat_session'] ?? '', $secret);
$room = preg_replace('/[^A-Za-z0-9_-]/', '', $_GET['room'] ?? 'lobby') ?: 'lobby';
header('Content-Type: text/html; charset=utf-8');
if ($user === null): ?>
<!doctype html>
<title>Chat — sign in</title>
<form method="post" action="/login">
  <input name="name" id="name" placeholder="your name" autofocus>
  <input name="room" type="hidden" value="<?= htmlspecialchars($room) ?>">
  <button id="login">Sign in</button>
</form>
<?php return; endif; ?>
<!doctype html>
<meta charset="utf-8">
<title>Chat — <?= htmlspecialchars($room) ?></title>
<style>
  body { font: 15px system-ui, sans-serif; margin: 1.5em; }
  #log { list-style: none; padding: 0; min-height: 8em; }
  .private { color: #7a3; } .note { color: #888; }
</style>
<h1>Room <?= htmlspecialchars($room) ?> <small id="status">connecting…</small></h1>
<ul id="log"></ul>
<form id="form">
  <input id="to" placeholder="to (optional)" size="10">
  <input id="text" placeholder="message" autocomplete="off" size="40">
  <button id="send">Send</button>
</form>
<script>
const me = <?= json_encode($user) ?>;
const log = document.getElementById('log');
function line(text, cls) {
  const li = document.createElement('li');
  li.textContent = text;
  if (cls) li.className = cls;
  log.appendChild(li);
}
const ws = new WebSocket(<?= json_encode($wsBase . '/chat-rooms/' . $room) ?>);
ws.onopen = () => { document.getElementById('status').textContent = 'connected'; };
ws.onclose = () => { document.getElementById('status').textContent = 'disconnected'; };
ws.onmessage = (e) => {
  const m = JSON.parse(e.data);
  if (m.type === 'message') {
    const head = m.to ? `${m.from} → ${m.to}` : m.from;
    line(`${head}: ${m.text}`, m.private ? 'private' : '');
  } else if (m.type === 'joined') line(`${m.user} joined`, 'note');
  else if (m.type === 'left') line(`${m.user} left`, 'note');
  else if (m.type === 'announcement') line(`📣 ${m.text}`, 'note');
  else if (m.type === 'welcome') line(`you are ${m.you} in room ${m.room}`, 'note');
};
document.getElementById('form').onsubmit = (e) => {
  e.preventDefault();
  const text = document.getElementById('text').value.trim();
  const to = document.getElementById('to').value.trim();
  if (!text) return;
  ws.send(JSON.stringify(to ? { text, to } : { text }));
  if (!to) line(`${me}: ${text}`);  // drawn here; the room gets it from the broadcast
  document.getElementById('text').value = '';
};
</script>
