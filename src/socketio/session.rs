//! One Socket.IO client: Echo's `subscribe`, `unsubscribe` and `client
//! event`, server-side auth, presence, and the pump that moves the core
//! outbox into engineioxide's socket.
//!
//! engineioxide calls the handler synchronously and in order for each
//! socket, so per-socket state is a short mutex; the only asynchronous
//! work, the auth endpoint call, runs in its own task and completes the
//! subscription only if the client still wants it.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use engineioxide::handler::EngineIoHandler;
use engineioxide::service::{EngineIoService, NotFoundService};
use engineioxide::{DisconnectReason, ProtocolVersion, Socket, Str};
use parking_lot::Mutex;
use serde::Deserialize;
use serde_json::value::RawValue;
use tokio_util::sync::CancellationToken;

use super::protocol::{self as wire, Packet, SOCKETIO_WIRE};
use crate::auth_endpoint::{self, AuthCall, Verdict};
use crate::config::ServerConfig;
use crate::core::channel::{ChannelKind, ChannelSpec};
use crate::core::connection::{Connection, SocketId};
use crate::core::event::{Event, EventKind, Member, RawJson};
use crate::core::hub::{ConnectionSlot, Hub, JoinError};
use crate::core::interest::{Interest, ROUTE_WAIT};
use crate::core::node::Node;
use crate::core::rules::{self, RateLimit};

/// Initial WebSocket read buffer of one Socket.IO connection, in bytes.
const SIO_WS_READ_BUFFER: usize = 1024;

/// The HTTP service mounted at `/socket.io/`.
pub type SocketIoService = EngineIoService<SocketIoFrontend, NotFoundService>;

/// The handler shared by every Socket.IO connection of one app.
pub struct SocketIoFrontend {
    node: Arc<Node>,
    hub: Arc<Hub>,
    outbox_limit: usize,
    shutdown: CancellationToken,
}

impl std::fmt::Debug for SocketIoFrontend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SocketIoFrontend")
            .field("app", &self.hub.app.id)
            .finish()
    }
}

struct Subscription {
    channel: Box<str>,
    member: Option<Box<str>>,
}

/// Per-socket state (engineioxide requires `Default`).
#[derive(Default)]
pub struct SocketState(Mutex<Option<Session>>);

struct Session {
    conn: Arc<Connection>,
    subscriptions: Vec<Subscription>,
    /// Channels waiting for the auth endpoint.
    pending: HashSet<Box<str>>,
    /// Auth calls still running, including those abandoned by an
    /// unsubscribe: they count toward the cap, so sub/unsub loops cannot
    /// pile them up.
    in_flight: usize,
    rate: RateLimit,
    cookie: Option<Arc<str>>,
    /// The connection's place in the app's quota, released when the
    /// session is dropped (on disconnect, or with the socket otherwise).
    _slot: ConnectionSlot,
    /// On the app's roster: closed when the app is deleted or disabled.
    _tracked: crate::core::roster::Tracked,
    /// Counts the client in the echo API's `status` while it lives.
    _counted: ClientCount,
}

/// One connected Socket.IO client in `AppStats::socketio_clients`
/// (laravel-echo-server's `/status` `subscription_count`), given back on drop.
pub struct ClientCount(Arc<Hub>);

impl ClientCount {
    pub fn new(hub: &Arc<Hub>) -> Self {
        hub.stats
            .socketio_clients
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        ClientCount(hub.clone())
    }
}

impl Drop for ClientCount {
    fn drop(&mut self) {
        self.0
            .stats
            .socketio_clients
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
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

type Sock = Arc<Socket<SocketState>>;

impl SocketIoFrontend {
    /// Builds the service for `hub`'s app at `/socket.io`.
    pub fn service(
        node: Arc<Node>,
        hub: Arc<Hub>,
        config: &ServerConfig,
        shutdown: CancellationToken,
    ) -> SocketIoService {
        let frontend = SocketIoFrontend {
            node,
            hub,
            outbox_limit: config.outbox_limit,
            shutdown,
        };
        let engine = engineioxide::config::EngineIoConfig::builder()
            .req_path("/socket.io")
            .max_payload(config.max_message_bytes as u64)
            .ws_max_message_size(config.max_message_bytes)
            // The WebSocket read buffer is allocated per connection up front
            // (tungstenite's default here is 4 KiB); Echo's messages are a
            // few hundred bytes and a longer one is read in several steps.
            .ws_read_buffer_size(SIO_WS_READ_BUFFER)
            // An abandoned polling session (a tab closed mid-poll) is
            // dropped once no ping arrived for interval + timeout (45 s),
            // and at most 128 packets wait for a poll that never comes.
            .ping_interval(std::time::Duration::from_secs(25))
            .ping_timeout(std::time::Duration::from_secs(20))
            .max_buffer_size(128)
            .build();
        EngineIoService::with_config(Arc::new(frontend), engine)
    }

    fn emit(socket: &Sock, frame: Bytes) {
        // SAFETY: every frame is built by `protocol` from `&str` pieces and
        // validated JSON text, so it is UTF-8.
        let text = unsafe { Str::from_bytes_unchecked(frame) };
        let _ = socket.emit(text);
    }

    /// The socket's session, if it got past the connection checks.
    fn with_session<R>(socket: &Sock, f: impl FnOnce(&mut Session) -> R) -> Option<R> {
        socket.data.0.lock().as_mut().map(f)
    }

    fn open(self: &Arc<Self>, socket: &Sock) {
        let Some(slot) = self.hub.try_connect() else {
            self.hub.stats.error("over_connection_quota");
            socket.close(DisconnectReason::ClosingServer);
            return;
        };
        let conn = Connection::with_id(
            SocketId::from_raw(socket.id.as_str()),
            &SOCKETIO_WIRE,
            self.outbox_limit,
        );
        self.hub.connection_opened(&conn);
        let cookie = socket
            .req_parts
            .headers
            .get(hyper::header::COOKIE)
            .and_then(|c| c.to_str().ok())
            .map(Into::into);
        *socket.data.0.lock() = Some(Session {
            conn: conn.clone(),
            subscriptions: Vec::new(),
            pending: HashSet::new(),
            in_flight: 0,
            rate: RateLimit::default(),
            cookie,
            _slot: slot,
            _counted: ClientCount::new(&self.hub),
            _tracked: self.hub.track(&conn),
        });
        // The pump: core outbox → engine socket, until either side closes.
        let (socket, shutdown) = (socket.clone(), self.shutdown.clone());
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
                    .into_iter()
                    .filter(|f| !f.data.is_empty() && !f.binary)
                {
                    // SAFETY: as in `emit`.
                    if socket
                        .emit(unsafe { Str::from_bytes_unchecked(frame.data) })
                        .is_err()
                    {
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

    fn subscribe(self: &Arc<Self>, socket: &Sock, arg: Option<&RawValue>) {
        #[derive(Deserialize)]
        struct Subscribe {
            channel: String,
            #[serde(default)]
            auth: Option<AuthOption>,
        }
        #[derive(Deserialize, Default)]
        struct AuthOption {
            #[serde(default)]
            headers: std::collections::BTreeMap<String, serde_json::Value>,
        }
        let Some(Ok(data)) = arg.map(|a| serde_json::from_str::<Subscribe>(a.get())) else {
            self.hub.stats.error("bad_subscribe");
            return;
        };
        let channel = data.channel;
        let spec = match ChannelSpec::parse(&channel) {
            Ok(spec) => spec,
            Err(_) => return Self::emit(socket, wire::subscription_error(&channel, 400)),
        };
        let (already, held, cookie, socket_id) = match Self::with_session(socket, |s| {
            let already = s.subscriptions.iter().any(|x| *x.channel == *channel)
                || s.pending.contains(channel.as_str());
            let held = s.subscriptions.len() + s.pending.len().max(s.in_flight);
            (already, held, s.cookie.clone(), s.conn.socket_id.clone())
        }) {
            Some(v) => v,
            None => return,
        };
        if already {
            return; // subscribed, or its auth call is in flight: no second call
        }
        if let Some(problem) = rules::subscription_limit_refusal(&self.hub.app, held) {
            tracing::debug!(channel, problem, "Socket.IO subscription refused");
            self.hub.stats.error("subscription_refused");
            return Self::emit(
                socket,
                wire::subscription_error(&channel, rules::SUBSCRIPTION_LIMIT_STATUS),
            );
        }
        match spec.kind {
            ChannelKind::ServerToUser => {
                Self::emit(socket, wire::subscription_error(&channel, 403))
            }
            ChannelKind::Public => self.join(socket, &spec, None),
            _ => {
                let Some(endpoint) = self.hub.app.auth_endpoint.clone() else {
                    tracing::warn!(
                        channel,
                        "a Socket.IO client asked for a private channel but the app has no auth_endpoint"
                    );
                    return Self::emit(socket, wire::subscription_error(&channel, 403));
                };
                let headers: Vec<(String, String)> = data
                    .auth
                    .unwrap_or_default()
                    .headers
                    .into_iter()
                    .filter_map(|(k, v)| match v {
                        serde_json::Value::String(s) => Some((k, s)),
                        serde_json::Value::Number(n) => Some((k, n.to_string())),
                        _ => None,
                    })
                    .collect();
                Self::with_session(socket, |s| {
                    s.in_flight += 1;
                    s.pending.insert(channel.as_str().into())
                });
                let (this, socket, timeout) = (
                    self.clone(),
                    socket.clone(),
                    Duration::from_secs(self.hub.app.auth_timeout),
                );
                tokio::spawn(async move {
                    let verdict = auth_endpoint::authorize(AuthCall {
                        endpoint: &endpoint,
                        channel: &channel,
                        socket_id: socket_id.as_str(),
                        headers: &headers,
                        handshake_cookie: cookie.as_deref(),
                        timeout,
                    })
                    .await;
                    let still_wanted = Self::with_session(&socket, |s| {
                        s.in_flight = s.in_flight.saturating_sub(1);
                        s.pending.remove(channel.as_str())
                    })
                    .unwrap_or(false);
                    if !still_wanted {
                        return;
                    }
                    let Ok(spec) = ChannelSpec::parse(&channel) else {
                        return;
                    };
                    match verdict {
                        Verdict::Allowed { channel_data } => {
                            tracing::debug!("{} authenticated for: {channel}", socket.id);
                            this.join(&socket, &spec, channel_data.as_deref())
                        }
                        Verdict::Refused { status, reason } => {
                            tracing::debug!(
                                channel,
                                status,
                                reason,
                                "{} could not be authenticated to {channel}",
                                socket.id
                            );
                            this.hub.stats.error("subscription_refused");
                            Self::emit(&socket, wire::subscription_error(&channel, status));
                        }
                    }
                });
            }
        }
    }

    fn join(self: &Arc<Self>, socket: &Sock, spec: &ChannelSpec<'_>, channel_data: Option<&str>) {
        let channel = spec.name;
        let member = if spec.is_presence() {
            match rules::presence_member(channel_data, self.hub.app.max_presence_member_bytes) {
                Ok(m) => Some(m),
                Err(problem) => {
                    tracing::warn!(
                        channel,
                        problem,
                        "the auth endpoint's channel_data is unusable"
                    );
                    return Self::emit(socket, wire::subscription_error(channel, 500));
                }
            }
        } else {
            None
        };
        // Interest-based routing: join once this node gets the channel's
        // events from every node (at once, unless it is new here).
        let interest = self.hub.interest(channel);
        if !interest.is_routed() {
            return self.await_route(socket, channel, member, interest);
        }
        self.join_routed(socket, spec, member);
    }

    /// Joins once the channel's route is up (bounded by `ROUTE_WAIT`), if
    /// the client still wants it then; `interest` is held meanwhile.
    fn await_route(
        self: &Arc<Self>,
        socket: &Sock,
        channel: &str,
        member: Option<Member>,
        interest: Interest,
    ) {
        Self::with_session(socket, |s| s.pending.insert(channel.into()));
        let (this, socket, channel) = (self.clone(), socket.clone(), channel.to_string());
        tokio::spawn(async move {
            if !interest.routed(ROUTE_WAIT).await {
                tracing::warn!(
                    channel,
                    "the cluster took too long to route a channel; joining anyway"
                );
            }
            let still_wanted = Self::with_session(&socket, |s| s.pending.remove(channel.as_str()))
                .unwrap_or(false);
            if let (true, Ok(spec)) = (still_wanted, ChannelSpec::parse(&channel)) {
                this.join_routed(&socket, &spec, member);
            }
            drop(interest);
        });
    }

    fn join_routed(&self, socket: &Sock, spec: &ChannelSpec<'_>, member: Option<Member>) {
        let channel = spec.name;
        let mut guard = socket.data.0.lock();
        let Some(session) = guard.as_mut() else {
            return;
        };
        let member_key = member.as_ref().map(|m| m.key.clone());
        let conn = &session.conn;
        let joined = self.hub.subscribe(conn, spec, member, |joined| {
            if let Some(members) = joined.members.as_deref() {
                conn.send(wire::presence_subscribed(channel, members));
            }
        });
        if let Err(JoinError::PresenceFull(_)) = joined {
            drop(guard);
            return Self::emit(socket, wire::subscription_error(channel, 403));
        }
        if let Some(key) = &member_key {
            self.hub.add_user_connection(key, conn);
        }
        if spec.cached
            && let Some(event) = self.hub.cached(channel)
        {
            conn.send(event.encoded(&SOCKETIO_WIRE));
        }
        session.subscriptions.push(Subscription {
            channel: channel.into(),
            member: member_key,
        });
        tracing::debug!("{} joined channel: {channel}", socket.id);
    }

    fn unsubscribe(&self, socket: &Sock, arg: Option<&RawValue>) {
        #[derive(Deserialize)]
        struct Unsubscribe {
            channel: String,
        }
        let Some(Ok(data)) = arg.map(|a| serde_json::from_str::<Unsubscribe>(a.get())) else {
            return;
        };
        let mut guard = socket.data.0.lock();
        let Some(session) = guard.as_mut() else {
            return;
        };
        session.pending.remove(data.channel.as_str());
        if let Some(pos) = session
            .subscriptions
            .iter()
            .position(|s| *s.channel == *data.channel)
        {
            let sub = session.subscriptions.swap_remove(pos);
            self.leave(&session.conn, &sub, &session.subscriptions);
            tracing::debug!("{} left channel: {} (unsubscribed)", socket.id, sub.channel);
        }
    }

    fn leave(&self, conn: &Arc<Connection>, sub: &Subscription, remaining: &[Subscription]) {
        self.hub
            .unsubscribe(conn, &sub.channel, sub.member.as_deref());
        if let Some(key) = &sub.member
            && !remaining.iter().any(|s| s.member == sub.member)
        {
            self.hub.remove_user_connection(key, conn);
        }
    }

    fn client_event(&self, socket: &Sock, arg: Option<&RawValue>) {
        #[derive(Deserialize)]
        struct ClientEvent<'a> {
            channel: Option<String>,
            event: Option<String>,
            #[serde(borrow)]
            data: Option<&'a RawValue>,
        }
        let Some(Ok(msg)) = arg.map(|a| serde_json::from_str::<ClientEvent>(a.get())) else {
            return;
        };
        let Some(name) = msg.event.filter(|e| e.starts_with("client-")) else {
            return;
        };
        let data = msg.data.map_or("null", |d| d.get());
        let mut guard = socket.data.0.lock();
        let Some(session) = guard.as_mut() else {
            return;
        };
        let channel = msg.channel.as_deref();
        let sub = channel.and_then(|c| session.subscriptions.iter().find(|s| &*s.channel == c));
        // As laravel-echo-server does, refused whispers are dropped silently:
        // the Socket.IO protocol has no error event for them.
        if rules::client_event_refusal(&self.hub.app, channel, sub.is_some(), data.len()).is_some()
        {
            self.hub.stats.error("client_event_refused");
            return;
        }
        let (Some(channel), Some(sub)) = (channel, sub) else {
            return;
        };
        let user_id = sub.member.clone();
        if !session.rate.allow(self.hub.app.client_event_rate) {
            self.hub.stats.error("client_event_rate_limited");
            return;
        }
        let exclude = Some(session.conn.socket_id.clone());
        drop(guard);
        let event = Event::new(
            channel,
            EventKind::Message {
                name: name.into(),
                data: RawJson::from_validated(data),
                user_id,
            },
            exclude,
        );
        crate::client_event_hook::relay(&self.node, &self.hub, event, None);
    }
}

impl EngineIoHandler for SocketIoFrontend {
    type Data = SocketState;

    fn on_connect(self: Arc<Self>, socket: Sock) {
        self.open(&socket);
        // Socket.IO v4 (Engine.IO 3) clients are connected to `/` at once;
        // v5 clients send a CONNECT packet first (answered in on_message).
        if socket.protocol == ProtocolVersion::V3 {
            let _ = socket.emit("0");
        }
    }

    fn on_disconnect(&self, socket: Sock, reason: DisconnectReason) {
        let Some(mut session) = socket.data.0.lock().take() else {
            return;
        };
        for sub in std::mem::take(&mut session.subscriptions) {
            self.leave(&session.conn, &sub, &[]);
            tracing::debug!(
                "{} left channel: {} ({})",
                socket.id,
                sub.channel,
                leave_reason(&reason)
            );
        }
        session.conn.terminate(1000, "disconnected");
        self.hub.connection_closed(&session.conn);
        // Dropping `session` releases its connection slot.
    }

    fn on_message(self: &Arc<Self>, msg: Str, socket: Sock) {
        self.hub.stats.received(msg.len());
        match wire::parse(&msg) {
            Ok(Packet::Connect { namespace: "/" }) => {
                let _ = socket.emit(format!("0{{\"sid\":\"{}\"}}", socket.id));
            }
            Ok(Packet::Connect { namespace }) => {
                let _ = socket.emit(format!(
                    "4{namespace},{{\"message\":\"Invalid namespace\"}}"
                ));
            }
            Ok(Packet::Disconnect) => socket.close(DisconnectReason::TransportClose),
            Ok(Packet::Event { name, arg }) => match name.as_str() {
                "subscribe" => self.subscribe(&socket, arg),
                "unsubscribe" => self.unsubscribe(&socket, arg),
                "client event" => self.client_event(&socket, arg),
                _ => self.hub.stats.error("unknown_event"),
            },
            Ok(Packet::Other) => {}
            Err(problem) => {
                tracing::debug!(problem, "bad Socket.IO packet");
                self.hub.stats.error("bad_packet");
            }
        }
    }

    fn on_binary(self: &Arc<Self>, _data: Bytes, _socket: Sock) {
        self.hub.stats.error("binary_frame");
    }
}
