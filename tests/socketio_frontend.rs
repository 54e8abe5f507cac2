//! Echo's Socket.IO connector against a real server on a free port, spoken
//! by hand: engine.io v4 (Socket.IO 3/4) and v3 (Socket.IO 2) over
//! WebSocket, and v4 over HTTP long-polling. Subscribe, unsubscribe,
//! broadcasts from the HTTP API, client events, ping/pong. Negative cases
//! wait for a sentinel event, never a sleep.

mod common;
mod signed;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};
use signed::*;

/// The next Socket.IO event packet (`42[...]`) as its JSON array,
/// answering engine.io pings on the way.
async fn sio_event(c: &mut Client) -> Value {
    loop {
        let text = next_text(c).await;
        if text == "2" {
            send_text(c, "3").await;
            continue;
        }
        if let Some(array) = text.strip_prefix("42") {
            return serde_json::from_str(array).expect("event array");
        }
        panic!("unexpected packet {text:?}");
    }
}

async fn emit(c: &mut Client, name: &str, arg: Value) {
    send_text(c, &format!("42{}", json!([name, arg]))).await;
}

async fn trigger_api(addr: SocketAddr, channel: &str, name: &str, data: &str) {
    let body = json!({ "name": name, "channel": channel, "data": data }).to_string();
    let (status, text) = api(addr, "POST", "/apps/100000/events", "", &body).await;
    assert_eq!(status, 200, "{text}");
}

/// Waits until `channel` has `n` subscriptions (Socket.IO has no
/// subscription acknowledgement), asking the HTTP API.
async fn wait_subscriptions(addr: SocketAddr, channel: &str, n: u64) {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let path = format!("/apps/100000/channels/{channel}");
        let (_, text) = api(addr, "GET", &path, "info=subscription_count", "").await;
        let count = json(&text)["subscription_count"].as_u64().unwrap_or(0);
        if count == n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{channel}: {count} subscriptions, want {n}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A stand-in for Laravel's `/broadcasting/auth`: allows every channel
/// except `private-denied` (403). Returns its URL.
async fn auth_endpoint() -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let mut got = Vec::new();
                // Read the head and the (small JSON) body.
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    got.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&got);
                    if let Some((head, body)) = text.split_once("\r\n\r\n") {
                        let len = head
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                            })
                            .unwrap_or(0);
                        if body.len() >= len {
                            break;
                        }
                    }
                }
                let text = String::from_utf8_lossy(&got);
                // The form body percent-encodes the channel name's '-'.
                let (status, body) = if text.contains("denied") {
                    ("403 Forbidden", "{}")
                } else {
                    ("200 OK", "{\"auth\":\"x\"}")
                };
                let response = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(response.as_bytes()).await;
            });
        }
    });
    format!("http://{addr}/broadcasting/auth")
}

/// A Socket.IO 3/4 client (engine.io v4) connected to `/`.
async fn sio_v4(addr: SocketAddr) -> Client {
    let mut c = connect(addr, "/socket.io/?EIO=4&transport=websocket").await;
    let open = next_text(&mut c).await;
    let handshake: Value =
        serde_json::from_str(open.strip_prefix('0').expect("open packet")).expect("open JSON");
    assert!(handshake["sid"].is_string(), "{open}");
    assert!(handshake["pingInterval"].is_u64(), "{open}");
    send_text(&mut c, "40").await;
    let mut connected = next_text(&mut c).await;
    while connected == "2" {
        send_text(&mut c, "3").await;
        connected = next_text(&mut c).await;
    }
    assert!(connected.starts_with("40{\"sid\":"), "{connected}");
    c
}

#[tokio::test]
async fn websocket_subscribe_broadcast_unsubscribe() {
    let mut config = config();
    config.apps[0].auth_endpoint = Some(auth_endpoint().await);
    let server = start(resonance::server::Server::builder(config)).await;
    let addr = server.addr;
    let mut a = sio_v4(addr).await;
    let mut b = sio_v4(addr).await;
    emit(
        &mut a,
        "subscribe",
        json!({ "channel": "orders", "auth": { "headers": {} } }),
    )
    .await;
    emit(&mut b, "subscribe", json!({ "channel": "orders" })).await;
    emit(&mut b, "subscribe", json!({ "channel": "sentinel" })).await;
    wait_subscriptions(addr, "orders", 2).await;
    wait_subscriptions(addr, "sentinel", 1).await;

    // Laravel's broadcast through the API: [event, channel, data].
    trigger_api(addr, "orders", "App\\Events\\Shipped", r#"{"id":5}"#).await;
    for c in [&mut a, &mut b] {
        assert_eq!(
            sio_event(c).await,
            json!(["App\\Events\\Shipped", "orders", {"id":5}])
        );
    }

    // Private channels ask the auth endpoint; a refusal subscribes nothing.
    for c in [&mut a, &mut b] {
        emit(
            c,
            "subscribe",
            json!({ "channel": "private-chat", "auth": { "headers": {} } }),
        )
        .await;
    }
    emit(
        &mut a,
        "subscribe",
        json!({ "channel": "private-denied", "auth": { "headers": {} } }),
    )
    .await;
    let refused = sio_event(&mut a).await;
    assert_eq!(refused[0], "subscription_error", "{refused}");
    assert_eq!(refused[1], "private-denied", "{refused}");
    wait_subscriptions(addr, "private-chat", 2).await;
    // A whisper reaches the others on the channel, not the sender; on a
    // public channel it is dropped (as laravel-echo-server drops it).
    emit(
        &mut a,
        "client event",
        json!({ "channel": "orders", "event": "client-public", "data": {} }),
    )
    .await;
    emit(
        &mut a,
        "client event",
        json!({ "channel": "private-chat", "event": "client-typing", "data": {"who":"a"} }),
    )
    .await;
    assert_eq!(
        sio_event(&mut b).await,
        json!(["client-typing", "private-chat", {"who":"a"}])
    );
    trigger_api(addr, "private-chat", "sentinel", "1").await;
    assert_eq!(
        sio_event(&mut a).await[0],
        "sentinel",
        "the sender got its own whisper"
    );
    assert_eq!(sio_event(&mut b).await[0], "sentinel");
    trigger_api(addr, "private-denied", "leak", "1").await;
    trigger_api(addr, "orders", "sentinel", "2").await;
    assert_eq!(
        sio_event(&mut a).await,
        json!(["sentinel", "orders", 2]),
        "refused channel delivered nothing"
    );
    assert_eq!(
        sio_event(&mut b).await,
        json!(["sentinel", "orders", 2]),
        "public whisper was dropped"
    );

    // Unsubscribed: nothing more from the channel (the sentinel channel
    // proves the path was flushed).
    emit(&mut b, "unsubscribe", json!({ "channel": "orders" })).await;
    wait_subscriptions(addr, "orders", 1).await;
    trigger_api(addr, "orders", "after", "1").await;
    trigger_api(addr, "sentinel", "sentinel", "2").await;
    assert_eq!(sio_event(&mut b).await, json!(["sentinel", "sentinel", 2]));
    assert_eq!(sio_event(&mut a).await, json!(["after", "orders", 1]));

    // Malformed packets are ignored; the connection keeps working.
    send_text(&mut a, "42not json").await;
    send_text(&mut a, "42[\"subscribe\",{\"channel\":\"bad name\"}]").await;
    trigger_api(addr, "orders", "still", "3").await;
    assert_eq!(sio_event(&mut a).await, json!(["still", "orders", 3]));
    server.shutdown().await;
}

#[tokio::test]
async fn socketio_2_clients_ping_and_receive() {
    let server = start(resonance::server::Server::builder(config())).await;
    let addr = server.addr;
    let mut c = connect(addr, "/socket.io/?EIO=3&transport=websocket").await;
    assert!(next_text(&mut c).await.starts_with('0'), "engine.io open");
    assert_eq!(
        next_text(&mut c).await,
        "40",
        "v2 clients are connected to / at once"
    );
    // Engine.IO 3: the client pings.
    send_text(&mut c, "2").await;
    assert_eq!(next_text(&mut c).await, "3");
    emit(&mut c, "subscribe", json!({ "channel": "v2" })).await;
    wait_subscriptions(addr, "v2", 1).await;
    trigger_api(addr, "v2", "E", r#"{"a":[1,2]}"#).await;
    assert_eq!(sio_event(&mut c).await, json!(["E", "v2", {"a":[1,2]}]));
    server.shutdown().await;
}

/// The packets of an engine.io v4 polling payload (separated by 0x1e).
fn packets(payload: &str) -> Vec<&str> {
    payload.split('\u{1e}').collect()
}

/// A long-polling request: (status, body).
async fn poll(addr: SocketAddr, method: &str, query: &str, body: &str) -> (u16, String) {
    let request = format!(
        "{method} /socket.io/?EIO=4&transport=polling{query} HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain;charset=UTF-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let (status, text) = http(addr, &request).await;
    let body = text
        .split_once("\r\n\r\n")
        .map_or(String::new(), |(_, b)| b.to_string());
    (status, body)
}

#[tokio::test]
async fn polling_transport_subscribes_and_receives() {
    let server = start(resonance::server::Server::builder(config())).await;
    let addr = server.addr;
    let (status, open) = poll(addr, "GET", "", "").await;
    assert_eq!(status, 200, "{open}");
    let handshake: Value =
        serde_json::from_str(open.strip_prefix('0').expect("open packet")).expect("open JSON");
    let sid = handshake["sid"].as_str().expect("sid").to_string();
    let q = format!("&sid={sid}");
    assert_eq!(poll(addr, "POST", &q, "40").await, (200, "ok".into()));
    let (status, connected) = poll(addr, "GET", &q, "").await;
    assert_eq!(status, 200);
    assert!(
        packets(&connected)
            .iter()
            .any(|p| p.starts_with("40{\"sid\":")),
        "{connected:?}"
    );
    let subscribe = format!("42{}", json!(["subscribe", { "channel": "polled" }]));
    assert_eq!(poll(addr, "POST", &q, &subscribe).await.0, 200);
    wait_subscriptions(addr, "polled", 1).await;
    trigger_api(addr, "polled", "E", r#"{"n":1}"#).await;
    let want = format!("42{}", json!(["E", "polled", {"n":1}]));
    loop {
        let (status, got) = poll(addr, "GET", &q, "").await;
        assert_eq!(status, 200, "{got:?}");
        let got = packets(&got);
        // Engine.IO pings may come first: answer them and poll again.
        if got.contains(&"2") {
            assert_eq!(poll(addr, "POST", &q, "3").await.0, 200);
        }
        if got.iter().any(|p| *p == want) {
            break;
        }
        assert!(got.iter().all(|p| *p == "2"), "unexpected packets {got:?}");
    }
    // An unknown sid is a 400, not a crash.
    assert_eq!(poll(addr, "GET", "&sid=nope", "").await.0, 400);
    server.shutdown().await;
}
