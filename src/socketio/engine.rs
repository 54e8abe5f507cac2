//! The engineioxide transport: Engine.IO long-polling and the polling →
//! websocket upgrade (socket.io-client's default `['polling', 'websocket']`),
//! v3 and v4. Clients that open a WebSocket directly take the lean transport
//! ([`super::lean`]) instead.
//!
//! engineioxide calls the handler synchronously and in order for each
//! socket; the session lives in the socket's [`SessionCell`], and a pump
//! task moves the session's outbox into engineioxide's socket.

use std::sync::Arc;

use bytes::Bytes;
use engineioxide::handler::EngineIoHandler;
use engineioxide::service::{EngineIoService, NotFoundService};
use engineioxide::{DisconnectReason, ProtocolVersion, Socket, Str};

use super::protocol::strip_message_type;
use super::session::{After, Handle, SessionCell, SocketIoFrontend};

/// Initial WebSocket read buffer of one upgraded Socket.IO connection, in bytes.
const SIO_WS_READ_BUFFER: usize = 1024;

/// The HTTP service mounted at `/socket.io/`.
pub type SocketIoService = EngineIoService<EngineFrontend, NotFoundService>;

/// engineioxide's handler, around the app's [`SocketIoFrontend`].
#[derive(Debug)]
pub struct EngineFrontend(Arc<SocketIoFrontend>);

type Sock = Arc<Socket<SessionCell>>;

impl Handle for Sock {
    fn cell(&self) -> &SessionCell {
        &self.data
    }
}

/// socket.io's words for why a client left, as laravel-echo-server's
/// devMode prints them (`left channel: x (transport close)`).
fn leave_reason(reason: &DisconnectReason) -> &'static str {
    match reason {
        DisconnectReason::TransportClose => "transport close",
        DisconnectReason::TransportError => "transport error",
        DisconnectReason::HeartbeatTimeout => "ping timeout",
        DisconnectReason::ClosingServer => "server shutting down",
        DisconnectReason::MultipleHttpPollingError | DisconnectReason::PacketParsingError => {
            "parse error"
        }
    }
}

/// Builds the service for `frontend`'s app at `/socket.io`.
pub fn service(frontend: Arc<SocketIoFrontend>) -> SocketIoService {
    let config = &frontend.config;
    let engine = engineioxide::config::EngineIoConfig::builder()
        .req_path("/socket.io")
        .max_payload(config.max_message_bytes as u64)
        .ws_max_message_size(config.max_message_bytes)
        // The WebSocket read buffer is allocated per connection up front
        // (tungstenite's default here is 4 KiB); Echo's messages are a
        // few hundred bytes and a longer one is read in several steps.
        .ws_read_buffer_size(SIO_WS_READ_BUFFER)
        // An abandoned polling session (a tab closed mid-poll) is dropped
        // once no ping arrived for interval + timeout, and at most 128
        // packets wait for a poll that never comes.
        .ping_interval(super::lean::ping_interval(config))
        .ping_timeout(super::lean::ping_timeout(config))
        .max_buffer_size(128)
        .build();
    EngineIoService::with_config(Arc::new(EngineFrontend(frontend)), engine)
}

/// Hands a frame built by [`super::protocol`] to engineioxide, which adds
/// the Engine.IO message type itself.
fn emit(socket: &Sock, frame: &Bytes) -> bool {
    let frame = strip_message_type(frame);
    // SAFETY: every frame is built by `protocol` from `&str` pieces and
    // validated JSON text, so it is UTF-8 (and the byte cut off is ASCII).
    socket
        .emit(unsafe { Str::from_bytes_unchecked(frame) })
        .is_ok()
}

impl EngineFrontend {
    fn open(&self, socket: &Sock) {
        let hub = &self.0.hub;
        let Some(slot) = hub.try_connect() else {
            hub.stats.error("over_connection_quota");
            socket.close(DisconnectReason::ClosingServer);
            return;
        };
        let cookie = socket
            .req_parts
            .headers
            .get(hyper::header::COOKIE)
            .and_then(|c| c.to_str().ok())
            .map(Into::into);
        let (conn, session) = self.0.open_session(socket.id.as_str(), cookie, slot);
        socket.data.set(session);
        // The pump: core outbox → engine socket, until either side closes.
        let (socket, shutdown) = (socket.clone(), self.0.shutdown.clone());
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => {
                        socket.close(DisconnectReason::ClosingServer);
                        return;
                    }
                    () = conn.ready() => {}
                }
                let drained = conn.drain();
                for frame in drained
                    .frames
                    .iter()
                    .filter(|f| !f.data.is_empty() && !f.binary)
                {
                    if !emit(&socket, &frame.data) {
                        socket.close(DisconnectReason::ClosingServer);
                        return;
                    }
                }
                if drained.close.is_some() {
                    socket.close(DisconnectReason::ClosingServer);
                    return;
                }
            }
        });
    }
}

impl EngineIoHandler for EngineFrontend {
    type Data = SessionCell;

    fn on_connect(self: Arc<Self>, socket: Sock) {
        self.open(&socket);
        // Socket.IO v4 (Engine.IO 3) clients are connected to `/` at once;
        // v5 clients send a CONNECT packet first (answered in on_message).
        if socket.protocol == ProtocolVersion::V3 {
            let _ = socket.emit("0");
        }
    }

    fn on_disconnect(&self, socket: Sock, reason: DisconnectReason) {
        self.0.close_session(&socket, leave_reason(&reason));
    }

    fn on_message(self: &Arc<Self>, msg: Str, socket: Sock) {
        if self.0.handle_packet(&socket, &msg) == After::Disconnect {
            socket.close(DisconnectReason::TransportClose);
        }
    }

    fn on_binary(self: &Arc<Self>, _data: Bytes, _socket: Sock) {
        self.0.hub.stats.error("binary_frame");
    }
}
