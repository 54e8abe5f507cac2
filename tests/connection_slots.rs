//! The app's connection quota is a guard released on drop: every kind of
//! connection gives its slot back when it ends, a panicking handler
//! included. Real server on a free port, real clients.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use futures_util::SinkExt;
use resonance::core::hub::Hub;
use resonance::custom::{Route, WebSocket};
use resonance::server::Server;

async fn count_reaches(hub: &Arc<Hub>, want: u64, what: &str) {
    let deadline = Instant::now() + TIMEOUT;
    while hub.connection_count() != want {
        assert!(
            Instant::now() < deadline,
            "{what}: connection count is {}, expected {want}",
            hub.connection_count()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(
        hub.stats
            .connections
            .load(std::sync::atomic::Ordering::Relaxed),
        want,
        "{what}: the connections gauge follows the count"
    );
}

#[tokio::test]
async fn a_panicking_custom_handler_gives_its_slot_back() {
    let mut config = config();
    config.apps[0].max_connections = 1;
    let route = Route::task(|mut ws: WebSocket| async move {
        // Panics on the first message, while holding the only slot.
        let _ = ws.recv().await;
        panic!("handler bug");
    });
    let server = Server::builder(config)
        .route("/boom", route)
        .bind()
        .await
        .expect("bind");
    let hub = server.node().hubs()[0].clone();
    let server = start_server(server).await;

    let mut first = connect(server.addr, "/boom").await;
    count_reaches(&hub, 1, "one raw connection").await;
    // The quota is full: a second connection is refused before the upgrade.
    let (refused, head) = Raw::connect(server.addr, "/boom", "").await;
    assert!(refused.is_none(), "over quota must be refused: {head}");
    assert!(head.starts_with("HTTP/1.1 503"), "{head}");

    send_text(&mut first, "panic now").await;
    // The panic closes the connection with 1011 ...
    loop {
        match next(&mut first).await {
            Some(m) if m.is_close() => {
                assert_eq!(m.as_close().map(|(c, _)| u16::from(c)), Some(1011), "{m:?}");
                break;
            }
            Some(_) => continue,
            None => break,
        }
    }
    // ... and the slot is free again: a new connection is accepted.
    count_reaches(&hub, 0, "after the handler panicked").await;
    let (again, head) = Raw::connect(server.addr, "/boom", "").await;
    assert!(again.is_some(), "a slot leaked: {head}");
    drop(again);
    count_reaches(&hub, 0, "after the second raw connection").await;
    server.shutdown().await;
}

#[tokio::test]
async fn every_kind_of_connection_returns_its_slot() {
    let server = Server::builder(config())
        .route("/echo", Route::echo())
        .bind()
        .await
        .expect("bind");
    let hub = server.node().hubs()[0].clone();
    let server = start_server(server).await;

    // Pusher: established, subscribed, then closed by the client.
    let mut pusher = connect(server.addr, "/app/resonance-key").await;
    assert!(
        next_text(&mut pusher)
            .await
            .contains("connection_established")
    );
    send_text(
        &mut pusher,
        r#"{"event":"pusher:subscribe","data":{"channel":"slots"}}"#,
    )
    .await;
    assert!(
        next_text(&mut pusher)
            .await
            .contains("subscription_succeeded")
    );
    count_reaches(&hub, 1, "Pusher open").await;
    pusher.close().await.expect("close");
    drop(pusher);
    count_reaches(&hub, 0, "Pusher closed").await;

    // Pusher: the TCP connection dropped without a close frame.
    let mut pusher = connect(server.addr, "/app/resonance-key").await;
    assert!(
        next_text(&mut pusher)
            .await
            .contains("connection_established")
    );
    count_reaches(&hub, 1, "Pusher open again").await;
    drop(pusher);
    count_reaches(&hub, 0, "Pusher dropped").await;

    // Socket.IO (engine.io v4 over WebSocket, spoken by hand).
    let mut sio = connect(server.addr, "/socket.io/?EIO=4&transport=websocket").await;
    assert!(next_text(&mut sio).await.starts_with('0'), "engine.io open");
    send_text(&mut sio, "40").await;
    let mut connected = next_text(&mut sio).await;
    // An engine.io ping may come first: answer it.
    while connected == "2" {
        send_text(&mut sio, "3").await;
        connected = next_text(&mut sio).await;
    }
    assert!(
        connected.starts_with("40"),
        "namespace connect: {connected}"
    );
    send_text(&mut sio, r#"42["subscribe",{"channel":"slots"}]"#).await;
    count_reaches(&hub, 1, "Socket.IO open").await;
    sio.close().await.expect("close");
    drop(sio);
    count_reaches(&hub, 0, "Socket.IO closed").await;

    // A custom raw route.
    let mut raw = connect(server.addr, "/echo").await;
    send_text(&mut raw, "hi").await;
    assert_eq!(next_text(&mut raw).await, "hi");
    count_reaches(&hub, 1, "raw open").await;
    raw.close().await.expect("close");
    drop(raw);
    count_reaches(&hub, 0, "raw closed").await;

    // A refused Pusher connection (unknown key) never takes a slot.
    let mut unknown = connect(server.addr, "/app/nope").await;
    assert!(next_text(&mut unknown).await.contains("4001"));
    count_reaches(&hub, 0, "refused Pusher").await;

    server.shutdown().await;
}
