<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="csrf-token" content="{{ csrf_token() }}">
  <title>Chat room {{ $room }}</title>
  <style>
    body { font-family: sans-serif; margin: 1rem; }
    #log { list-style: none; padding: 0; border: 1px solid #ccc; height: 220px; overflow-y: auto; }
    #log li { padding: 2px 6px; }
    #log li.mine { color: #555; }
  </style>
</head>
<body>
  <h1>Room {{ $room }} <small id="status">connecting…</small></h1>
  <p>Signed in as <strong id="me">{{ $user->name }}</strong></p>
  <ul id="log"></ul>
  <form id="form"><input id="text" autocomplete="off" autofocus> <button id="send">Send</button></form>
  <script>
    // The browser sends this site's session cookie with the handshake (same host):
    // ChatSocket::onOpen sees the Laravel user through $conn->user().
    const ws = new WebSocket(@json($socketUrl));
    const log = document.getElementById('log');
    const add = (text, cls) => {
      const li = document.createElement('li');
      li.textContent = text;
      if (cls) li.className = cls;
      log.appendChild(li);
    };
    ws.onopen = () => (document.getElementById('status').textContent = 'connected');
    ws.onclose = (e) => (document.getElementById('status').textContent = `closed (${e.code})`);
    ws.onmessage = (e) => {
      const m = JSON.parse(e.data);
      if (m.type === 'message') add(`${m.user}: ${m.text}`);
      else if (m.type === 'sent') add(`me: ${m.text}`, 'mine');
      else if (m.type === 'joined') add(`${m.user} joined`);
      else if (m.type === 'left') add(`${m.user} left`);
      else if (m.type === 'error') add(`error: ${m.message}`);
    };
    document.getElementById('form').onsubmit = (e) => {
      e.preventDefault();
      const input = document.getElementById('text');
      if (input.value.trim()) ws.send(input.value);
      input.value = '';
    };
  </script>
</body>
</html>
