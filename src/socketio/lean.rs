//! The lean Engine.IO WebSocket transport: clients that open a WebSocket
//! directly (`/socket.io/?EIO=4&transport=websocket`, or `EIO=3`, with no
//! `sid`) — socket.io-client with `transports: ['websocket']`, and every
//! load tool — run on the same lean WebSocket connection as the Pusher
//! front-end ([`crate::ws::LeanSocket`]): no read or write buffer while
//! idle, one small task, and broadcasts written as the shared bytes encoded
//! once for every Socket.IO client (Engine.IO 3 and 4 frame a message the
//! same way: `4` + the Socket.IO packet), straight from the fan-out when
//! the task is not writing.
//!
//! Engine.IO over WebSocket, as engine.io 3.x and 6.x servers speak it:
//!
//! - on open the server sends `0{"sid":..,"upgrades":[],"pingInterval":..,
//!   "pingTimeout":..}` (plus `"maxPayload"` for v4); v3 clients are then
//!   connected to `/` at once (`40`), v4 clients ask with `40` and get
//!   `40{"sid":..}`;
//! - heartbeat: v4 — the server pings (`2`) every `pingInterval` and closes
//!   a client whose pong (`3`) has not come `pingTimeout` later; v3 — the
//!   client pings, the server answers `3` (echoing a probe's payload) and
//!   closes a client silent for `pingInterval + pingTimeout`;
//! - `4…` carries a Socket.IO packet (see [`super::session`]), `1` closes,
//!   `6` (noop) is ignored; any other packet is a parse error and closes the
//!   WebSocket with 1002 (the client reconnects; others are unaffected).
//!
//! Everything the server sends goes through the connection's outbox, so it
//! leaves in order and in batches.

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;

use super::session::{After, SessionCell, SocketIoFrontend};
use crate::config::ServerConfig;
use crate::core::hub::ConnectionSlot;
use crate::ws::LeanSocket;
use crate::ws::lean::{Incoming, PROTOCOL_ERROR, Step};
use crate::ws::outbox::{Written, write_outbox};

/// How long a close handshake or a stuck write may take.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);
/// Close codes this transport sends.
const GOING_AWAY: u16 = 1001;
const NORMAL: u16 = 1000;

/// The Engine.IO protocol revision a client speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Eio {
    /// socket.io-client 2.x (laravel-echo-server's).
    V3,
    /// socket.io-client 3.x and 4.x.
    V4,
}

impl Eio {
    /// The revision asked for in a `/socket.io/` query (`EIO=3` / `EIO=4`).
    pub fn from_query(value: &str) -> Option<Eio> {
        match value {
            "3" => Some(Eio::V3),
            "4" => Some(Eio::V4),
            _ => None,
        }
    }
}

/// The heartbeat interval (`server.socketio_ping_interval`).
pub fn ping_interval(config: &ServerConfig) -> Duration {
    Duration::from_secs(config.socketio_ping_interval.max(1))
}

/// How long a missing heartbeat is waited for (`server.socketio_ping_timeout`).
pub fn ping_timeout(config: &ServerConfig) -> Duration {
    Duration::from_secs(config.socketio_ping_timeout.max(1))
}

/// A fresh Engine.IO session id: 20 URL-safe characters (120 random bits).
pub fn new_sid() -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 15]>())
}

/// The Engine.IO open packet.
fn open_packet(sid: &str, eio: Eio, config: &ServerConfig) -> Bytes {
    let mut open = serde_json::json!({
        "sid": sid,
        "upgrades": [],
        "pingInterval": ping_interval(config).as_millis() as u64,
        "pingTimeout": ping_timeout(config).as_millis() as u64,
    });
    if eio == Eio::V4 {
        open["maxPayload"] = config.max_message_bytes.into();
    }
    Bytes::from(format!("0{open}"))
}

/// Why the loop ended, in socket.io's words (the devMode log's
/// `left channel: x (reason)`).
enum End {
    Transport(&'static str),
    /// Close the WebSocket with this code and reason.
    Close(u16, &'static str),
}

/// Runs one client to completion. `slot` is its place in the app's quota,
/// held until the session ends.
pub async fn run(
    mut socket: LeanSocket,
    frontend: Arc<SocketIoFrontend>,
    eio: Eio,
    cookie: Option<Arc<str>>,
    slot: ConnectionSlot,
) {
    let config = frontend.config.clone();
    let sid = new_sid();
    let (conn, session) = frontend.open_session(&sid, cookie, slot);
    let cell = Arc::new(SessionCell::default());
    cell.set(session);
    conn.send(open_packet(&sid, eio, &config));
    drop(sid);
    if eio == Eio::V3 {
        conn.send(Bytes::from_static(b"40"));
    }
    let interval = ping_interval(&config);
    let timeout = ping_timeout(&config);
    let write_timeout = Duration::from_secs(config.write_timeout);
    // v4: when the unanswered ping was sent. v3: unused.
    let mut ping_sent: Option<Instant> = None;
    // v3: when the client last sent anything.
    let mut last_seen = Instant::now();
    let timer = tokio::time::sleep(match eio {
        Eio::V4 => interval,
        Eio::V3 => interval + timeout,
    });
    tokio::pin!(timer);

    // Fan-outs write straight to the socket while this task is not writing;
    // the first drain (the open packet above) starts with the task as the
    // writer.
    conn.set_direct(Some(socket.direct_writer()));
    let end = loop {
        tokio::select! {
            biased;
            () = frontend.shutdown.cancelled() => {
                break End::Close(GOING_AWAY, "server shutting down");
            }
            () = conn.ready() => match write_outbox(&mut socket, &conn, write_timeout).await {
                Written::Done => {}
                Written::Failed => break End::Transport("transport error"),
                Written::Close(close) => {
                    frontend.hub.stats.error(match close.code {
                        4100 => "slow_consumer",
                        _ => "closed_by_server",
                    });
                    Box::pin(socket.close(close.code, close.reason, CLOSE_TIMEOUT)).await;
                    break End::Transport("server namespace disconnect");
                }
            },
            readable = socket.readable() => {
                if readable.is_err() {
                    break End::Transport("transport error");
                }
                let now = Instant::now();
                last_seen = now;
                let mut ended: Option<End> = None;
                let step = socket.read_available(|message| {
                    if ended.is_some() {
                        return;
                    }
                    let text = match message {
                        Incoming::Text(text) => text,
                        Incoming::Binary(_) => {
                            frontend.hub.stats.error("binary_frame");
                            return;
                        }
                        // Answered by the WebSocket layer.
                        Incoming::Ping(_) | Incoming::Pong(_) => return,
                    };
                    match text.as_bytes().first() {
                        Some(b'4') => {
                            if frontend.handle_packet(&cell, &text[1..]) == After::Disconnect {
                                ended = Some(End::Close(NORMAL, "client namespace disconnect"));
                            }
                        }
                        // A v3 heartbeat (or a probe): answered with its payload.
                        Some(b'2') => {
                            conn.send(if text.len() == 1 {
                                Bytes::from_static(b"3")
                            } else {
                                Bytes::from(format!("3{}", &text[1..]))
                            });
                        }
                        Some(b'3') => {
                            if eio == Eio::V4 && ping_sent.take().is_some() {
                                timer.as_mut().reset((now + interval).into());
                            }
                        }
                        Some(b'1') => ended = Some(End::Close(NORMAL, "transport close")),
                        Some(b'6') => {}
                        _ => {
                            tracing::debug!(socket_id = %conn.socket_id, "bad Engine.IO packet");
                            frontend.hub.stats.error("bad_packet");
                            ended = Some(End::Close(PROTOCOL_ERROR, "engine.io parse error"));
                        }
                    }
                });
                if let Some(end) = ended {
                    break end;
                }
                match step {
                    Step::Open => {
                        // Pongs for the client's WebSocket pings.
                        if socket.wants_flush()
                            && matches!(write_outbox(&mut socket, &conn, write_timeout).await, Written::Failed)
                        {
                            break End::Transport("transport error");
                        }
                    }
                    Step::Closed => {
                        conn.drain();
                        Box::pin(socket.finish(CLOSE_TIMEOUT)).await;
                        break End::Transport("transport close");
                    }
                    Step::Failed(code) => {
                        tracing::debug!(socket_id = %conn.socket_id, code, "websocket protocol error");
                        frontend.hub.stats.error("websocket_protocol");
                        conn.drain();
                        Box::pin(socket.finish(CLOSE_TIMEOUT)).await;
                        break End::Transport("transport error");
                    }
                }
            }
            () = &mut timer => {
                let now = Instant::now();
                match eio {
                    Eio::V4 if ping_sent.is_some() => break End::Close(NORMAL, "ping timeout"),
                    Eio::V4 => {
                        conn.send(Bytes::from_static(b"2"));
                        ping_sent = Some(now);
                        timer.as_mut().reset((now + timeout).into());
                    }
                    Eio::V3 if now.duration_since(last_seen) >= interval + timeout => {
                        break End::Close(NORMAL, "ping timeout");
                    }
                    Eio::V3 => timer.as_mut().reset((last_seen + interval + timeout).into()),
                }
            }
        }
    };
    conn.set_direct(None);
    let reason = match end {
        End::Transport(reason) => reason,
        End::Close(code, reason) => {
            if reason == "ping timeout" {
                frontend.hub.stats.error("ping_timeout");
            }
            // What is queued goes first (e.g. answers to the packets before
            // a `1`), then the close frame.
            conn.terminate(code, reason);
            let drained = conn.drain();
            if socket
                .send(
                    drained.raw.as_deref(),
                    drained.frames.into_iter().map(|f| f.data),
                )
                .is_ok()
            {
                Box::pin(socket.close(code, reason, CLOSE_TIMEOUT)).await;
            }
            reason
        }
    };
    frontend.close_session(&cell, reason);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::adapter::LocalAdapter;
    use crate::core::app::AppConfig;
    use crate::core::node::Node;
    use tokio_util::sync::CancellationToken;

    /// Every idle connection holds one of these futures: keep it small
    /// (the Pusher session's is held to the same bound).
    #[tokio::test]
    async fn connection_future_is_small() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let _client = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (stream, _) = listener.accept().await.unwrap();
        let node = Node::new(vec![AppConfig::default()], Arc::new(LocalAdapter));
        let hub = node.hubs()[0].clone();
        let slot = hub.try_connect().unwrap();
        let frontend = SocketIoFrontend::new(
            node,
            hub,
            Arc::new(ServerConfig::default()),
            CancellationToken::new(),
        );
        let future = run(
            LeanSocket::new(stream, &[], 1024),
            frontend,
            Eio::V4,
            None,
            slot,
        );
        let size = std::mem::size_of_val(&future);
        eprintln!("Socket.IO connection future: {size} bytes");
        // 792 bytes in a debug build when this test was written.
        assert!(size <= 2048, "Socket.IO connection future is {size} bytes");
    }

    #[test]
    fn open_packets() {
        let config = ServerConfig::default();
        let v4 = open_packet("abc", Eio::V4, &config);
        let v4: serde_json::Value = serde_json::from_slice(&v4[1..]).unwrap();
        assert_eq!(v4["sid"], "abc");
        assert_eq!(v4["upgrades"], serde_json::json!([]));
        assert_eq!(v4["pingInterval"], 25000);
        assert_eq!(v4["pingTimeout"], 20000);
        assert_eq!(v4["maxPayload"], config.max_message_bytes);
        let v3 = open_packet("abc", Eio::V3, &config);
        assert!(v3.starts_with(b"0{"));
        let v3: serde_json::Value = serde_json::from_slice(&v3[1..]).unwrap();
        assert!(v3.get("maxPayload").is_none());
        assert_eq!(Eio::from_query("3"), Some(Eio::V3));
        assert_eq!(Eio::from_query("5"), None);
        let sid = new_sid();
        assert_eq!(sid.len(), 20);
        assert!(
            sid.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
    }
}
