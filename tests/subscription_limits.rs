//! The per-connection subscription cap on both front-ends, and the app's
//! auth endpoint called once per (connection, channel), against a real
//! server and a real little HTTP auth endpoint that counts its calls.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::*;
use resonance::server::Server;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Semaphore;

fn capped(max: usize, auth_endpoint: Option<String>) -> resonance::config::Config {
    let mut c = config();
    c.apps[0].max_subscriptions_per_connection = max;
    c.apps[0].auth_endpoint = auth_endpoint;
    c
}

async fn subscribe(c: &mut Client, channel: &str) {
    send_text(
        c,
        &format!(r#"{{"event":"pusher:subscribe","data":{{"channel":"{channel}"}}}}"#),
    )
    .await;
}

/// The next frame that is not a `pusher:pong`/`ping`, parsed.
async fn next_json(c: &mut Client) -> serde_json::Value {
    serde_json::from_str(&next_text(c).await).expect("JSON frame")
}

/// Sends a ping and waits for its pong: everything sent before has been
/// handled, and anything it produced was received before the pong.
async fn sentinel(c: &mut Client) -> Vec<serde_json::Value> {
    send_text(c, r#"{"event":"pusher:ping","data":{}}"#).await;
    let mut before = Vec::new();
    loop {
        let v = next_json(c).await;
        if v["event"] == "pusher:pong" {
            return before;
        }
        before.push(v);
    }
}

async fn pusher(addr: std::net::SocketAddr) -> Client {
    let mut c = connect(addr, "/app/resonance-key?protocol=7").await;
    assert_eq!(
        next_json(&mut c).await["event"],
        "pusher:connection_established"
    );
    c
}

#[tokio::test]
async fn pusher_connections_are_capped_and_stay_open() {
    let server = start(Server::builder(capped(2, None))).await;
    let mut c = pusher(server.addr).await;
    for channel in ["a", "b"] {
        subscribe(&mut c, channel).await;
        assert_eq!(
            next_json(&mut c).await["event"],
            "pusher_internal:subscription_succeeded"
        );
    }
    subscribe(&mut c, "c").await;
    let refusal = next_json(&mut c).await;
    assert_eq!(refusal["event"], "pusher:subscription_error", "{refusal}");
    assert_eq!(refusal["channel"], "c");
    let data: serde_json::Value =
        serde_json::from_str(refusal["data"].as_str().expect("data string")).unwrap();
    assert_eq!(data["type"], "LimitReached");
    assert_eq!(data["status"], 429);
    assert!(
        data["error"]
            .as_str()
            .unwrap()
            .contains("at most 2 channels per connection"),
        "{data}"
    );
    // Still open, and a freed place can be used.
    send_text(
        &mut c,
        r#"{"event":"pusher:unsubscribe","data":{"channel":"a"}}"#,
    )
    .await;
    subscribe(&mut c, "c").await;
    assert_eq!(
        next_json(&mut c).await["event"],
        "pusher_internal:subscription_succeeded"
    );
    server.shutdown().await;
}

/// An HTTP auth endpoint that counts calls and answers each one only when
/// the test adds a permit to `release`.
async fn counting_endpoint() -> (String, Arc<AtomicUsize>, Arc<Semaphore>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://{}/broadcasting/auth",
        listener.local_addr().unwrap()
    );
    let calls = Arc::new(AtomicUsize::new(0));
    let release = Arc::new(Semaphore::new(0));
    let (c, r) = (calls.clone(), release.clone());
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let (c, r) = (c.clone(), r.clone());
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let mut got = 0;
                // Read the whole request (headers + the small form body).
                while got < buf.len() {
                    let Ok(n) = s.read(&mut buf[got..]).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    got += n;
                    let text = String::from_utf8_lossy(&buf[..got]);
                    if text.contains("socket_id=") {
                        break;
                    }
                }
                c.fetch_add(1, Ordering::SeqCst);
                let Ok(permit) = r.acquire().await else {
                    return;
                };
                permit.forget();
                let body = r#"{"auth":"from-the-app"}"#;
                let _ = s
                    .write_all(
                        format!(
                            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                            body.len()
                        )
                        .as_bytes(),
                    )
                    .await;
            });
        }
    });
    (url, calls, release)
}

#[tokio::test]
async fn pusher_auth_calls_are_deduplicated_and_count_toward_the_cap() {
    let (url, calls, release) = counting_endpoint().await;
    let server = start(Server::builder(capped(2, Some(url)))).await;
    let mut c = pusher(server.addr).await;
    // The same unsigned subscribe three times while the app thinks.
    for _ in 0..3 {
        subscribe(&mut c, "private-x").await;
    }
    assert!(sentinel(&mut c).await.is_empty(), "nothing answered yet");
    // One pending call + one subscription reach the cap of 2.
    subscribe(&mut c, "a").await;
    subscribe(&mut c, "b").await;
    let got = sentinel(&mut c).await;
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[0]["event"], "pusher_internal:subscription_succeeded");
    assert_eq!(got[0]["channel"], "a");
    assert_eq!(got[1]["event"], "pusher:subscription_error", "{got:?}");
    assert_eq!(got[1]["channel"], "b");
    // The app answers: one confirmation, from one call.
    release.add_permits(10);
    let ok = next_json(&mut c).await;
    assert_eq!(
        ok["event"], "pusher_internal:subscription_succeeded",
        "{ok}"
    );
    assert_eq!(ok["channel"], "private-x");
    assert!(
        sentinel(&mut c).await.is_empty(),
        "exactly one confirmation"
    );
    // A new subscribe after the answer is a new call (not swallowed).
    send_text(
        &mut c,
        r#"{"event":"pusher:unsubscribe","data":{"channel":"private-x"}}"#,
    )
    .await;
    subscribe(&mut c, "private-x").await;
    let ok = next_json(&mut c).await;
    assert_eq!(ok["channel"], "private-x", "{ok}");
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "one call per pending channel"
    );
    server.shutdown().await;
}

/// Engine.IO v4 over WebSocket, by hand: open and Socket.IO connect.
async fn socketio(addr: std::net::SocketAddr) -> Client {
    let mut c = connect(addr, "/socket.io/?EIO=4&transport=websocket").await;
    assert!(
        next_socketio(&mut c).await.starts_with('0'),
        "engine.io open"
    );
    send_text(&mut c, "40").await;
    assert!(
        next_socketio(&mut c).await.starts_with("40"),
        "namespace connect"
    );
    c
}

/// The next Socket.IO packet that is not an engine.io ping (answered).
async fn next_socketio(c: &mut Client) -> String {
    loop {
        let t = next_text(c).await;
        if t == "2" {
            send_text(c, "3").await;
            continue;
        }
        return t;
    }
}

#[tokio::test]
async fn socketio_connections_are_capped() {
    let server = start(Server::builder(capped(2, None))).await;
    let mut c = socketio(server.addr).await;
    for channel in ["a", "b", "c"] {
        send_text(
            &mut c,
            &format!(r#"42["subscribe",{{"channel":"{channel}"}}]"#),
        )
        .await;
    }
    assert_eq!(
        next_socketio(&mut c).await,
        r#"42["subscription_error","c",429]"#
    );
    assert_eq!(server.rooms.size("a") + server.rooms.size("b"), 2);
    assert_eq!(server.rooms.size("c"), 0);
    // Still open: a freed place can be used.
    send_text(&mut c, r#"42["unsubscribe",{"channel":"a"}]"#).await;
    send_text(&mut c, r#"42["subscribe",{"channel":"c"}]"#).await;
    let (status, _) = trigger(server.addr, "c", "hello", "1").await;
    assert_eq!(status, 200);
    // Public Socket.IO subscribes are not confirmed, so the trigger may
    // race the join: retry until it lands (bounded by next_text's timeout).
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    while server.rooms.size("c") != 1 {
        assert!(tokio::time::Instant::now() < deadline, "never joined c");
        tokio::task::yield_now().await;
    }
    let (status, _) = trigger(server.addr, "c", "hello", "2").await;
    assert_eq!(status, 200);
    let got = next_socketio(&mut c).await;
    assert!(got.starts_with(r#"42["hello","c""#), "{got}");
    server.shutdown().await;
}
