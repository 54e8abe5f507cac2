//! The lean Engine.IO WebSocket transport (clients that open
//! `/socket.io/?EIO=3|4&transport=websocket` directly), spoken by hand
//! against a real server: the open packet, heartbeats in both directions,
//! a dead client dropped after the ping timeout, bad input closing only
//! the client that sent it, the Socket.IO disconnect packet, refusals
//! before the upgrade. Real clients (socket.io-client 2.x and 4.x through
//! Echo) run the same path in tests/laravel.

mod common;
mod signed;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use resonance::core::hub::Hub;
use serde_json::{Value, json};
use signed::*;

const V4: &str = "/socket.io/?EIO=4&transport=websocket";
const V3: &str = "/socket.io/?EIO=3&transport=websocket";

/// A config whose Engine.IO heartbeat is 1 s + 1 s.
fn fast_heartbeat() -> resonance::config::Config {
    let mut c = config();
    c.server.socketio_ping_interval = 1;
    c.server.socketio_ping_timeout = 1;
    c
}

async fn emit(c: &mut Client, name: &str, arg: Value) {
    send_text(c, &format!("42{}", json!([name, arg]))).await;
}

/// The next event packet, answering v4 pings on the way.
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

async fn trigger_api(addr: SocketAddr, channel: &str, name: &str, data: &str) {
    let body = json!({ "name": name, "channel": channel, "data": data }).to_string();
    let (status, text) = api(addr, "POST", "/apps/100000/events", "", &body).await;
    assert_eq!(status, 200, "{text}");
}

async fn count_reaches(hub: &Arc<Hub>, want: u64, what: &str) {
    let deadline = Instant::now() + TIMEOUT;
    while hub.connection_count() != want {
        assert!(
            Instant::now() < deadline,
            "{what}: {} connections, want {want}",
            hub.connection_count()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn wait_subscriptions(addr: SocketAddr, channel: &str, n: u64) {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let path = format!("/apps/100000/channels/{channel}");
        let (_, text) = api(addr, "GET", &path, "info=subscription_count", "").await;
        if json(&text)["subscription_count"].as_u64().unwrap_or(0) == n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{channel}: want {n} subscriptions"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A v4 client connected to `/`; returns it and its sid.
async fn v4_client(addr: SocketAddr) -> (Client, String) {
    let mut c = connect(addr, V4).await;
    let open = next_text(&mut c).await;
    let open: Value = serde_json::from_str(open.strip_prefix('0').expect("open")).expect("json");
    let sid = open["sid"].as_str().expect("sid").to_string();
    send_text(&mut c, "40").await;
    let connected = next_text(&mut c).await;
    assert_eq!(connected, format!("40{{\"sid\":\"{sid}\"}}"));
    (c, sid)
}

/// Reads until the server closes; returns the close code (None: the
/// stream ended without one).
async fn closed(c: &mut Client, answer_pings: bool) -> Option<u16> {
    loop {
        match next(c).await {
            Some(m) if m.is_close() => return m.as_close().map(|(code, _)| u16::from(code)),
            Some(m) if answer_pings && m.as_text() == Some("2") => send_text(c, "3").await,
            Some(_) => continue,
            None => return None,
        }
    }
}

#[tokio::test]
async fn open_packets_and_namespaces() {
    let server = start(resonance::server::Server::builder(config())).await;
    let addr = server.addr;
    let mut c = connect(addr, V4).await;
    let open = next_text(&mut c).await;
    let open: Value = serde_json::from_str(open.strip_prefix('0').expect("open")).expect("json");
    assert_eq!(open["upgrades"], json!([]), "{open}");
    assert_eq!(open["pingInterval"], 25000, "{open}");
    assert_eq!(open["pingTimeout"], 20000, "{open}");
    assert_eq!(open["maxPayload"], 64 * 1024, "{open}");
    // Only `/` is served.
    send_text(&mut c, "40/admin,").await;
    assert_eq!(
        next_text(&mut c).await,
        r#"44/admin,{"message":"Invalid namespace"}"#
    );
    send_text(&mut c, r#"40{"token":"x"}"#).await;
    assert!(next_text(&mut c).await.starts_with("40{\"sid\":"));

    // v3: connected to `/` at once; the client pings, probes are echoed.
    let mut c3 = connect(addr, V3).await;
    let open = next_text(&mut c3).await;
    let open: Value = serde_json::from_str(open.strip_prefix('0').expect("open")).expect("json");
    assert!(
        open["sid"].is_string() && open.get("maxPayload").is_none(),
        "{open}"
    );
    assert_eq!(next_text(&mut c3).await, "40");
    send_text(&mut c3, "2probe").await;
    assert_eq!(next_text(&mut c3).await, "3probe");
    send_text(&mut c3, "2").await;
    assert_eq!(next_text(&mut c3).await, "3");

    server.shutdown().await;
}

#[tokio::test]
async fn v4_server_pings_and_drops_a_client_that_does_not_answer() {
    let builder = resonance::server::Server::builder(fast_heartbeat());
    let server = builder.bind().await.expect("bind");
    let hub = server.node().hubs()[0].clone();
    let server = start_server(server).await;
    let addr = server.addr;
    let (mut alive, _) = v4_client(addr).await;
    let (mut dead, _) = v4_client(addr).await;
    emit(&mut alive, "subscribe", json!({ "channel": "hb" })).await;
    emit(&mut dead, "subscribe", json!({ "channel": "hb" })).await;
    wait_subscriptions(addr, "hb", 2).await;
    count_reaches(&hub, 2, "both open").await;
    // The live client answers every ping (in its own task) until an event
    // comes; the dead one reads (so it sees the ping) but never answers.
    let alive = tokio::spawn(async move { sio_event(&mut alive).await });
    let t0 = Instant::now();
    assert_eq!(next_text(&mut dead).await, "2", "the server pings");
    assert!(
        closed(&mut dead, false).await.is_some(),
        "closed after the timeout"
    );
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(800),
        "closed too early: {took:?}"
    );
    wait_subscriptions(addr, "hb", 1).await;
    count_reaches(&hub, 1, "the dead client is gone").await;
    // Several heartbeats later the live one is still there and subscribed.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    count_reaches(&hub, 1, "the live client stays").await;
    trigger_api(addr, "hb", "still", "1").await;
    assert_eq!(alive.await.expect("live client"), json!(["still", "hb", 1]));
    server.shutdown().await;
}

#[tokio::test]
async fn v3_client_that_stops_pinging_is_dropped() {
    let server = resonance::server::Server::builder(fast_heartbeat())
        .bind()
        .await
        .expect("bind");
    let hub = server.node().hubs()[0].clone();
    let server = start_server(server).await;
    let mut c = connect(server.addr, V3).await;
    assert!(next_text(&mut c).await.starts_with('0'));
    assert_eq!(next_text(&mut c).await, "40");
    let t0 = Instant::now();
    // Pings keep it open past interval + timeout ...
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(700)).await;
        send_text(&mut c, "2").await;
        assert_eq!(next_text(&mut c).await, "3");
    }
    assert!(t0.elapsed() > Duration::from_secs(2));
    count_reaches(&hub, 1, "still open").await;
    // ... silence does not (the v3 server never pings).
    assert!(closed(&mut c, false).await.is_some());
    count_reaches(&hub, 0, "dropped").await;
    server.shutdown().await;
}

#[tokio::test]
async fn bad_input_closes_only_its_sender() {
    let server = resonance::server::Server::builder(config())
        .bind()
        .await
        .expect("bind");
    let hub = server.node().hubs()[0].clone();
    let server = start_server(server).await;
    let addr = server.addr;
    let (mut good, _) = v4_client(addr).await;
    emit(&mut good, "subscribe", json!({ "channel": "bad" })).await;

    // An unknown Engine.IO packet type: closed with 1002.
    let (mut bad, _) = v4_client(addr).await;
    send_text(&mut bad, "9nonsense").await;
    assert_eq!(closed(&mut bad, true).await, Some(1002));
    // An empty message is not a packet either.
    let (mut empty, _) = v4_client(addr).await;
    send_text(&mut empty, "").await;
    assert_eq!(closed(&mut empty, true).await, Some(1002));
    // A broken WebSocket frame (unmasked): 1002 from the WebSocket layer.
    let (raw, head) = Raw::connect(addr, V4, "").await;
    let mut raw = raw.unwrap_or_else(|| panic!("upgrade: {head}"));
    raw.frame(0x81, b"40", false).await;
    assert_eq!(raw.close_code().await.map(|(c, _)| c), Some(1002));
    // Invalid UTF-8 in a text frame: 1007.
    let (raw, head) = Raw::connect(addr, V4, "").await;
    let mut raw = raw.unwrap_or_else(|| panic!("upgrade: {head}"));
    raw.frame(0x81, b"42\xff", true).await;
    assert_eq!(raw.close_code().await.map(|(c, _)| c), Some(1007));
    // A bad Socket.IO packet in a good Engine.IO message is ignored.
    send_text(&mut good, "42not json").await;
    // A Socket.IO disconnect (`41`) closes that client normally.
    let (mut leaving, _) = v4_client(addr).await;
    send_text(&mut leaving, "41").await;
    assert_eq!(closed(&mut leaving, true).await, Some(1000));

    count_reaches(&hub, 1, "only the good client is left").await;
    wait_subscriptions(addr, "bad", 1).await;
    trigger_api(addr, "bad", "fine", "1").await;
    assert_eq!(sio_event(&mut good).await, json!(["fine", "bad", 1]));
    server.shutdown().await;
}

#[tokio::test]
async fn refusals_and_shutdown() {
    let mut config = config();
    config.apps[0].max_connections = 1;
    let server = resonance::server::Server::builder(config)
        .bind()
        .await
        .expect("bind");
    let hub = server.node().hubs()[0].clone();
    let server = start_server(server).await;
    let addr = server.addr;
    let (mut first, _) = v4_client(addr).await;
    count_reaches(&hub, 1, "one open").await;
    // Over the app's quota: refused before the upgrade.
    let (refused, head) = Raw::connect(addr, V3, "").await;
    assert!(refused.is_none(), "{head}");
    assert!(head.starts_with("HTTP/1.1 503"), "{head}");
    // Shutdown closes open clients with 1001 (they reconnect elsewhere).
    let stop = tokio::spawn(server.shutdown());
    assert_eq!(closed(&mut first, true).await, Some(1001));
    let _ = stop.await;
    count_reaches(&hub, 0, "closed at shutdown").await;
}
