//! Notifications for one user at a time, pushed by the web app through the
//! Pusher HTTP API.
//!
//! ```sh
//! target/release/examples/notify 127.0.0.1:8090                         # user from ?user=
//! target/release/examples/notify 127.0.0.1:8090 http://127.0.0.1:8000/ws-auth   # user from the app's session
//! ```
//!
//! A browser opens `ws://HOST/notify`; the connection belongs to the user
//! the authenticator names: with an auth URL, the app's answer to a POST
//! carrying the browser's cookies (`{"user_id": ...}`); without one, the
//! `?user=` query parameter (for trying it out). The app then sends to that
//! user exactly as Pusher's `sendToUser` does — a trigger on the channel
//! `#server-to-user-{id}` of app `100000` (key `resonance-key`, secret
//! `resonance-secret`):
//!
//! ```sh
//! # any Pusher server SDK: pusher.trigger('#server-to-user-42', 'invoice-paid', {...})
//! ```
//!
//! and every open connection of that user gets one text frame:
//! `{"event":"invoice-paid","channel":"#server-to-user-42","data":"{...}"}`.

use std::net::SocketAddr;
use std::process::ExitCode;

use resonance::config::Config;
use resonance::custom::{HttpAuthenticator, Refusal, Route, WebSocket, auth};
use resonance::server::Server;
use serde_json::json;

async fn session(mut ws: WebSocket) {
    let hello = json!({ "event": "connected", "user": ws.user() }).to_string();
    ws.send(hello);
    // Notifications arrive through the user's channel; the browser has
    // nothing to say, so just wait for it to leave.
    while ws.recv().await.is_some() {}
}

#[tokio::main]
async fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let addr: SocketAddr = match args.next().unwrap_or("127.0.0.1:8090".into()).parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("usage: notify HOST:PORT [AUTH_URL] ({e})");
            return ExitCode::from(2);
        }
    };
    let mut config = Config::default();
    config.server.host = addr.ip().to_string();
    config.server.port = addr.port();
    let route = Route::task(session);
    let route = match args.next() {
        Some(url) => match HttpAuthenticator::new(&url) {
            Ok(a) => route.authenticator(a),
            Err(e) => {
                eprintln!("notify: {e}");
                return ExitCode::from(2);
            }
        },
        None => route.authenticator(auth::from_fn(|req| match req.query_param("user") {
            Some(user) if !user.is_empty() => Ok(Some(user)),
            _ => Err(Refusal::unauthorized("who are you? add ?user=ID")),
        })),
    };
    let server = match Server::builder(config).route("/notify", route).bind().await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("notify: cannot listen on {addr}: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Ok(a) = server.local_addr() {
        println!("notify on ws://{a}/notify ; API http://{a}/apps/100000/events");
    }
    server
        .run(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await;
    ExitCode::SUCCESS
}
