//! One channel, three front-ends: a Pusher connection, a Socket.IO
//! connection and a raw custom-route connection each receive an HTTP-API
//! event in their own format, whoever subscribed (and so was encoded) first.
//! Regression for the encoding cache slot the raw wire shared with Socket.IO.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use resonance::core::adapter::LocalAdapter;
use resonance::core::app::AppConfig;
use resonance::core::channel::ChannelSpec;
use resonance::core::connection::{Connection, Wire, WireVariant};
use resonance::core::event::{Event, RawJson};
use resonance::core::hub::Hub;
use resonance::custom::wire::RAW_WIRE;
use resonance::custom::{Callbacks, Conn, Message, Route};
use resonance::pusher::protocol::PUSHER_WIRE;
use resonance::server::Server;
use resonance::socketio::protocol::SOCKETIO_WIRE;

const ORDERS: [[usize; 3]; 6] = [
    [0, 1, 2],
    [0, 2, 1],
    [1, 0, 2],
    [1, 2, 0],
    [2, 0, 1],
    [2, 1, 0],
];

fn text(conn: &Connection) -> Vec<String> {
    conn.drain()
        .frames
        .into_iter()
        .map(|f| String::from_utf8(f.data.to_vec()).expect("text frame"))
        .collect()
}

/// Checks one frame per wire, each in that wire's format (for an API event
/// the Pusher and raw envelopes happen to be the same text; Socket.IO's is
/// the engine.io message `42["event","channel",data]`, the same bytes for
/// Engine.IO 3 and 4).
fn assert_formats(pusher: &str, socketio: &str, raw: &str, order: &[usize]) {
    let p: serde_json::Value = serde_json::from_str(pusher).expect("pusher JSON");
    assert_eq!(
        p["event"], "greet",
        "pusher frame, order {order:?}: {pusher}"
    );
    assert_eq!(p["data"], "{\"n\":1}", "pusher data is the JSON string");
    assert!(
        socketio.starts_with("42[\"greet\",\"mixed"),
        "socket.io frame, order {order:?}: {socketio}"
    );
    let r: serde_json::Value = serde_json::from_str(raw).expect("raw JSON envelope");
    assert_eq!(r["event"], "greet", "raw frame, order {order:?}: {raw}");
    assert_eq!(r["data"], "{\"n\":1}");
}

#[test]
fn the_real_wires_have_distinct_variants() {
    let wires: [&Wire; 3] = [&PUSHER_WIRE, &SOCKETIO_WIRE, &RAW_WIRE];
    for (i, a) in wires.iter().enumerate() {
        for b in &wires[i + 1..] {
            assert_ne!(a.variant, b.variant, "{a:?} and {b:?} share a cache slot");
        }
    }
    for (i, v) in WireVariant::ALL.iter().enumerate() {
        assert_eq!(v.index(), i, "ALL is in index order");
    }
}

#[test]
fn core_encodes_each_wire_in_its_own_format_in_any_order() {
    for order in ORDERS {
        let hub = Hub::new(AppConfig::default(), Arc::new(LocalAdapter));
        let spec = ChannelSpec::parse("mixed").expect("name");
        let conns = [
            Connection::new(&PUSHER_WIRE, 16),
            Connection::new(&SOCKETIO_WIRE, 16),
            Connection::new(&RAW_WIRE, 16),
        ];
        for &i in &order {
            hub.subscribe(&conns[i], &spec, None, |_| {}).expect("join");
        }
        let event = Event::message("mixed", "greet", RawJson::string("{\"n\":1}"), None);
        assert_eq!(hub.publish(&Arc::new(event)), 3);
        let got: Vec<Vec<String>> = conns.iter().map(|c| text(c)).collect();
        assert!(got.iter().all(|g| g.len() == 1), "{got:?}");
        assert_formats(&got[0][0], &got[1][0], &got[2][0], &order);
    }
}

/// Joins the room named by the path; says "ready" once joined.
struct Joiner;

impl Callbacks for Joiner {
    async fn on_message(&self, conn: &Conn, _message: Message) {
        conn.send("ready");
    }
}

async fn pusher_client(addr: std::net::SocketAddr, channel: &str) -> Client {
    let mut c = connect(addr, "/app/resonance-key?protocol=7").await;
    assert!(
        next_text(&mut c)
            .await
            .contains("pusher:connection_established")
    );
    send_text(
        &mut c,
        &format!(r#"{{"event":"pusher:subscribe","data":{{"channel":"{channel}"}}}}"#),
    )
    .await;
    assert!(next_text(&mut c).await.contains("subscription_succeeded"));
    c
}

/// Engine.IO v4 over WebSocket, by hand: open, Socket.IO connect, subscribe.
async fn socketio_client(addr: std::net::SocketAddr, channel: &str) -> Client {
    let mut c = connect(addr, "/socket.io/?EIO=4&transport=websocket").await;
    assert!(next_text(&mut c).await.starts_with('0'), "engine.io open");
    send_text(&mut c, "40").await;
    let open = next_socketio(&mut c).await;
    assert!(open.starts_with("40"), "namespace connect: {open}");
    send_text(
        &mut c,
        &format!(r#"42["subscribe",{{"channel":"{channel}"}}]"#),
    )
    .await;
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
async fn each_front_end_gets_its_own_format_over_real_sockets() {
    let server = start(
        Server::builder(config()).route("/raw/{room}", Route::callbacks(Joiner).room_param("room")),
    )
    .await;
    for (n, order) in ORDERS.iter().enumerate() {
        let channel = format!("mixed{n}");
        let mut clients: [Option<Client>; 3] = [None, None, None];
        for &i in order {
            let before = server.rooms.size(&channel);
            clients[i] = Some(match i {
                0 => pusher_client(server.addr, &channel).await,
                1 => socketio_client(server.addr, &channel).await,
                _ => {
                    let mut c = connect(server.addr, &format!("/raw/{channel}")).await;
                    send_text(&mut c, "hello").await;
                    assert_eq!(next_text(&mut c).await, "ready");
                    c
                }
            });
            // Subscribed in this order: wait until the hub counts it.
            let deadline = tokio::time::Instant::now() + TIMEOUT;
            while server.rooms.size(&channel) != before + 1 {
                assert!(tokio::time::Instant::now() < deadline, "never joined");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        let (status, body) = trigger(server.addr, &channel, "greet", "{\"n\":1}").await;
        assert_eq!(status, 200, "{body}");
        let [Some(p), Some(s), Some(r)] = &mut clients else {
            unreachable!("all three connected")
        };
        let (p, s, r) = (
            next_text(p).await,
            next_socketio(s).await,
            next_text(r).await,
        );
        assert_formats(&p, &s, &r, order);
    }
    server.shutdown().await;
}
