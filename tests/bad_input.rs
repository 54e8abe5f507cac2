//! Malformed and hostile input on a custom route: each offending connection
//! is closed with the code RFC 6455 asks for, and the server and every other
//! connection keep working.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use parking_lot::Mutex;
use resonance::custom::{Callbacks, Conn, Message, Route};
use resonance::server::Server;

/// Echoes, panics on "panic", and records how connections ended.
#[derive(Clone, Default)]
struct Fragile {
    closed: Arc<Mutex<Vec<u16>>>,
    errors: Arc<Mutex<Vec<u16>>>,
}

impl Callbacks for Fragile {
    async fn on_message(&self, conn: &Conn, message: Message) {
        if message.as_text() == Some("panic") {
            panic!("handler bug (expected by the test)");
        }
        conn.send(message);
    }

    async fn on_close(&self, _conn: &Conn, code: u16, _reason: &str) {
        self.closed.lock().push(code);
    }

    async fn on_error(&self, _conn: &Conn, error: &resonance::custom::ProtocolError) {
        self.errors.lock().push(error.close_code);
    }
}

async fn setup() -> (Running, Fragile, Client) {
    let fragile = Fragile::default();
    let mut c = config();
    c.server.max_message_bytes = 4096;
    let server = start(Server::builder(c).route("/f", Route::callbacks(fragile.clone()))).await;
    let bystander = connect(server.addr, "/f").await;
    (server, fragile, bystander)
}

/// The bystander connection and new ones still work.
async fn still_works(server: &Running, bystander: &mut Client) {
    send_text(bystander, "still here").await;
    assert_eq!(next_text(bystander).await, "still here");
    let mut fresh = connect(server.addr, "/f").await;
    send_text(&mut fresh, "new").await;
    assert_eq!(next_text(&mut fresh).await, "new");
}

async fn closes_with(server: &Running, first: u8, payload: &[u8], mask: bool) -> Option<u16> {
    let (raw, _) = Raw::connect(server.addr, "/f", "").await;
    let mut raw = raw.expect("upgrade");
    raw.frame(first, payload, mask).await;
    raw.close_code().await.map(|(code, _)| code)
}

async fn wait_for(list: &Arc<Mutex<Vec<u16>>>, code: u16) {
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    while !list.lock().contains(&code) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{code} never recorded; got {:?}",
            list.lock()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn invalid_utf8_in_text_is_1007() {
    let (server, fragile, mut bystander) = setup().await;
    assert_eq!(
        closes_with(&server, 0x81, &[0xC3, 0x28], true).await,
        Some(1007)
    );
    wait_for(&fragile.errors, 1007).await;
    still_works(&server, &mut bystander).await;
    server.shutdown().await;
}

#[tokio::test]
async fn unmasked_client_frames_are_1002() {
    let (server, _, mut bystander) = setup().await;
    assert_eq!(
        closes_with(&server, 0x81, b"hello", false).await,
        Some(1002)
    );
    still_works(&server, &mut bystander).await;
    server.shutdown().await;
}

#[tokio::test]
async fn reserved_bits_are_1002() {
    let (server, _, mut bystander) = setup().await;
    assert_eq!(
        closes_with(&server, 0x81 | 0x40, b"rsv1", true).await,
        Some(1002)
    );
    assert_eq!(
        closes_with(&server, 0x83, b"opcode 3", true).await,
        Some(1002)
    );
    still_works(&server, &mut bystander).await;
    server.shutdown().await;
}

#[tokio::test]
async fn oversized_messages_are_1009() {
    let (server, fragile, mut bystander) = setup().await;
    assert_eq!(
        closes_with(&server, 0x82, &vec![7u8; 5000], true).await,
        Some(1009)
    );
    wait_for(&fragile.errors, 1009).await;
    // Over the limit across fragments, too.
    let (raw, _) = Raw::connect(server.addr, "/f", "").await;
    let mut raw = raw.unwrap();
    raw.frame(0x02, &vec![1u8; 3000], true).await;
    raw.frame(0x80, &vec![1u8; 3000], true).await;
    assert_eq!(raw.close_code().await.map(|c| c.0), Some(1009));
    still_works(&server, &mut bystander).await;
    server.shutdown().await;
}

#[tokio::test]
async fn control_frames_over_125_bytes_are_1002() {
    let (server, _, mut bystander) = setup().await;
    assert_eq!(
        closes_with(&server, 0x89, &[0u8; 126], true).await,
        Some(1002)
    );
    still_works(&server, &mut bystander).await;
    server.shutdown().await;
}

#[tokio::test]
async fn abrupt_disconnects_are_1006_for_the_handler() {
    let (server, fragile, mut bystander) = setup().await;
    let (raw, _) = Raw::connect(server.addr, "/f", "").await;
    let mut raw = raw.unwrap();
    raw.frame(0x01, b"half a mess", true).await; // a fragment, then gone
    drop(raw);
    wait_for(&fragile.closed, 1006).await;
    still_works(&server, &mut bystander).await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_panicking_handler_closes_only_its_connection_with_1011() {
    let (server, _, mut bystander) = setup().await;
    let (raw, _) = Raw::connect(server.addr, "/f", "").await;
    let mut raw = raw.unwrap();
    raw.frame(0x81, b"panic", true).await;
    assert_eq!(
        raw.close_code().await,
        Some((1011, "internal error".into()))
    );
    still_works(&server, &mut bystander).await;
    server.shutdown().await;
}

#[tokio::test]
async fn close_handshake_reports_the_peer_code() {
    let (server, fragile, _bystander) = setup().await;
    let (raw, _) = Raw::connect(server.addr, "/f", "").await;
    let mut raw = raw.unwrap();
    let mut payload = 4321u16.to_be_bytes().to_vec();
    payload.extend_from_slice(b"bye");
    raw.frame(0x88, &payload, true).await;
    assert_eq!(
        raw.close_code().await,
        Some((4321, String::new())),
        "code echoed"
    );
    wait_for(&fragile.closed, 4321).await;
    server.shutdown().await;
}
