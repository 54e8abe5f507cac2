//! A chat: one room per URL path, everyone in a room sees the others'
//! messages and who is there, and the page is served by the same process.
//!
//! ```sh
//! cargo build --release --examples
//! target/release/examples/chat 127.0.0.1:8080
//! # open http://127.0.0.1:8080/?room=lobby&name=alice in two tabs (two names)
//! ```
//!
//! Wire protocol (JSON text frames, server → browser):
//! `{"type":"users","users":[...]}` whenever the room's list changes and
//! `{"type":"message","from":NAME,"text":TEXT}` for others' messages; the
//! browser sends the text of a message as a plain text frame. The socket is
//! `ws://HOST/chat/{room}?name=NAME`; the name is the connection's user.
//!
//! The room comes from the URL, i.e. from whoever connects, so it must not
//! name a channel the app broadcasts private data on. Resonance refuses
//! `private-*` rooms (403 before the upgrade) unless the route authorises
//! them; this one does for direct messages: `private-dm.alice.bob` is open
//! to alice and bob only. (The name here is whatever `?name=` says; a real
//! app's authenticator checks a session or a token first.)
//!
//! Every other setting comes from the `RESONANCE_*` environment like
//! `resonance start` (TLS with `RESONANCE_TLS_CERT`/`RESONANCE_TLS_KEY`, a
//! cluster with `RESONANCE_ADAPTER=redis`, the app credentials...), and the
//! Pusher and Socket.IO front-ends run next to the chat: an HTTP API trigger
//! on channel `lobby` reaches the chat room `lobby` too.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::ExitCode;

use parking_lot::Mutex;
use resonance::config::{Config, Overrides};
use resonance::core::connection::SocketId;
use resonance::custom::{Callbacks, Conn, Message, Refusal, Route, auth, http};
use resonance::server::Server;
use serde_json::json;

/// Who is in each room on this node, in join order.
#[derive(Default)]
struct Chat {
    rooms: Mutex<HashMap<String, Vec<(SocketId, String)>>>,
}

impl Chat {
    /// Sends the room's user list to everyone in it.
    fn announce(&self, conn: &Conn, room: &str) {
        let users: Vec<String> = {
            let rooms = self.rooms.lock();
            let mut names: Vec<String> = rooms
                .get(room)
                .map(|list| list.iter().map(|(_, n)| n.clone()).collect())
                .unwrap_or_default();
            names.dedup();
            names
        };
        let update = json!({ "type": "users", "users": users }).to_string();
        let _ = conn.rooms().broadcast(room, update, &[]);
    }
}

impl Callbacks for Chat {
    async fn on_open(&self, conn: &Conn) {
        let (Some(room), Some(name)) = (conn.param("room"), conn.user()) else {
            return;
        };
        self.rooms
            .lock()
            .entry(room.to_string())
            .or_default()
            .push((conn.id().clone(), name.to_string()));
        self.announce(conn, room);
    }

    async fn on_message(&self, conn: &Conn, message: Message) {
        let (Some(room), Some(name), Some(text)) =
            (conn.param("room"), conn.user(), message.as_text())
        else {
            return; // binary frames mean nothing here
        };
        let text: String = text.chars().take(2000).collect();
        let out = json!({ "type": "message", "from": name, "text": text }).to_string();
        let _ = conn.broadcast(room, out);
    }

    async fn on_close(&self, conn: &Conn, _code: u16, _reason: &str) {
        let Some(room) = conn.param("room") else {
            return;
        };
        {
            let mut rooms = self.rooms.lock();
            if let Some(list) = rooms.get_mut(room) {
                list.retain(|(id, _)| id != conn.id());
                if list.is_empty() {
                    rooms.remove(room);
                }
            }
        }
        self.announce(conn, room);
    }
}

/// The name in `?name=`: 1–32 letters, digits, `_` or `-`.
fn name_from_query(req: &resonance::custom::UpgradeRequest) -> auth::AuthResult {
    let name = req.query_param("name").unwrap_or_default();
    let ok = !name.is_empty()
        && name.len() <= 32
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(Some(name))
    } else {
        Err(Refusal::unauthorized(
            "choose a name: ?name= with 1-32 letters, digits, _ or -",
        ))
    }
}

/// Private rooms: `private-dm.{a}.{b}` admits users a and b only.
fn dm_member(user: Option<&str>, room: &str) -> bool {
    let (Some(user), Some(pair)) = (user, room.strip_prefix("private-dm.")) else {
        return false;
    };
    pair.split('.').any(|member| member == user)
}

#[tokio::main]
async fn main() -> ExitCode {
    let addr: SocketAddr = match std::env::args()
        .nth(1)
        .unwrap_or("127.0.0.1:8080".into())
        .parse()
    {
        Ok(a) => a,
        Err(e) => {
            eprintln!("usage: chat HOST:PORT ({e})");
            return ExitCode::from(2);
        }
    };
    let overrides = Overrides {
        host: Some(addr.ip().to_string()),
        port: Some(addr.port()),
    };
    let config = match Config::load(None, &|name| std::env::var(name).ok(), &overrides) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("chat: {e}");
            return ExitCode::from(2);
        }
    };
    // The builder picks the adapter from `[cluster]` as `resonance start` does.
    let server = Server::builder(config)
        .route(
            "/chat/{room}",
            Route::callbacks(Chat::default())
                .room_param("room")
                .authenticator(auth::from_fn(name_from_query))
                .authorize_rooms(dm_member),
        )
        .get("/", |_req| async { http::html(PAGE) })
        .bind()
        .await;
    let server = match server {
        Ok(s) => s,
        Err(e) => {
            eprintln!("chat: cannot listen on {addr}: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Ok(a) = server.local_addr() {
        println!("chat on http://{a}/?room=lobby&name=alice");
    }
    server
        .run(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await;
    ExitCode::SUCCESS
}

const PAGE: &str = r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Resonance chat</title>
<style>
  body { font: 15px system-ui, sans-serif; margin: 0; display: grid; grid-template-columns: 1fr 180px; grid-template-rows: auto 1fr auto; height: 100vh; }
  header { grid-column: 1 / 3; background: #234; color: #fff; padding: 8px 14px; }
  #log { list-style: none; margin: 0; padding: 10px 14px; overflow-y: auto; }
  #log li { margin: 4px 0; }
  #log .me { color: #555; }
  #log b { color: #236; }
  aside { border-left: 1px solid #ccc; padding: 10px; background: #f6f6f6; }
  aside ul { padding-left: 18px; }
  form { grid-column: 1 / 3; display: flex; gap: 6px; padding: 8px; border-top: 1px solid #ccc; }
  #text { flex: 1; font-size: 15px; padding: 6px; }
</style>
</head>
<body>
<header>Room <b id="room"></b> as <b id="me"></b> — <span id="status">connecting…</span></header>
<ul id="log"></ul>
<aside><div>In the room</div><ul id="users"></ul></aside>
<form id="form"><input id="text" autocomplete="off" placeholder="Say something"><button id="send">Send</button></form>
<script>
  const params = new URLSearchParams(location.search);
  const room = params.get('room') || 'lobby';
  const name = params.get('name') || ('guest' + Math.floor(Math.random() * 1000));
  document.getElementById('room').textContent = room;
  document.getElementById('me').textContent = name;
  const log = document.getElementById('log');
  function line(from, text, mine) {
    const li = document.createElement('li');
    if (mine) li.className = 'me';
    const b = document.createElement('b');
    b.textContent = from + ': ';
    li.append(b, document.createTextNode(text));
    log.append(li);
    log.scrollTop = log.scrollHeight;
  }
  const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
  const ws = new WebSocket(`${scheme}://${location.host}/chat/${encodeURIComponent(room)}?name=${encodeURIComponent(name)}`);
  ws.onopen = () => { document.getElementById('status').textContent = 'connected'; };
  ws.onclose = (e) => { document.getElementById('status').textContent = `closed (${e.code})`; };
  ws.onmessage = (e) => {
    const msg = JSON.parse(e.data);
    if (msg.type === 'users') {
      const ul = document.getElementById('users');
      ul.replaceChildren(...msg.users.map((u) => { const li = document.createElement('li'); li.textContent = u; return li; }));
    } else if (msg.type === 'message') {
      line(msg.from, msg.text, false);
    }
  };
  document.getElementById('form').onsubmit = (e) => {
    e.preventDefault();
    const input = document.getElementById('text');
    if (!input.value || ws.readyState !== WebSocket.OPEN) return;
    ws.send(input.value);
    line(name, input.value, true);
    input.value = '';
  };
</script>
</body>
</html>
"#;
