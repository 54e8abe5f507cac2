//! One Socket.IO client's protocol state, whatever its transport: Echo's
//! `subscribe`, `unsubscribe` and `client event`, server-side auth,
//! presence.
//!
//! The transport seam (as the Pusher front-end's `Session` has one): a
//! transport parses its Engine.IO framing, hands each Socket.IO packet (the
//! text after the Engine.IO `4`) to [`SocketIoFrontend::handle_packet`], and
//! sends what is queued on the session's [`Connection`] — every answer,
//! broadcasts included, goes through that outbox, so a client's packets
//! leave in one order. Two transports drive it:
//!
//! - [`super::lean`]: clients that open a WebSocket directly
//!   (`transport=websocket`, no `sid`), on the lean WebSocket connection the
//!   Pusher front-end uses (no buffers while idle, shared frames);
//! - [`super::engine`]: engineioxide, for long-polling and the
//!   polling → websocket upgrade.
//!
//! A transport keeps the state in a [`SessionCell`] (a short mutex) that it
//! reaches through a [`Handle`]; the only asynchronous work, the auth
//! endpoint call and the wait for a cluster route, runs in its own task and
//! completes the subscription only if the client still wants it then.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
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

/// What one app's Socket.IO clients share: the node, the app's hub and the
/// server settings they need. One per app, for every transport.
pub struct SocketIoFrontend {
    pub(crate) node: Arc<Node>,
    pub(crate) hub: Arc<Hub>,
    pub(crate) config: Arc<ServerConfig>,
    pub(crate) shutdown: CancellationToken,
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

/// Where a transport keeps a client's [`Session`]: empty until the client
/// got past the connection checks, and again once it left.
#[derive(Default)]
pub struct SessionCell(Mutex<Option<Session>>);

impl SessionCell {
    /// Runs `f` on the session, if there is one.
    pub(crate) fn with<R>(&self, f: impl FnOnce(&mut Session) -> R) -> Option<R> {
        self.0.lock().as_mut().map(f)
    }

    pub(crate) fn set(&self, session: Session) {
        *self.0.lock() = Some(session);
    }

    fn take(&self) -> Option<Session> {
        self.0.lock().take()
    }
}

/// How the session logic reaches a client's [`SessionCell`] from the tasks
/// it spawns: a cheap, shareable pointer to it.
pub trait Handle: Clone + Send + Sync + 'static {
    fn cell(&self) -> &SessionCell;
}

impl Handle for Arc<SessionCell> {
    fn cell(&self) -> &SessionCell {
        self
    }
}

/// The Socket.IO protocol state of one client.
pub struct Session {
    conn: Arc<Connection>,
    subscriptions: Vec<Subscription>,
    /// Channels waiting for the auth endpoint or their cluster route.
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

/// What the transport should do after a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum After {
    Continue,
    /// The client disconnected from `/` (`1`): close the transport.
    Disconnect,
}

impl SocketIoFrontend {
    pub fn new(
        node: Arc<Node>,
        hub: Arc<Hub>,
        config: Arc<ServerConfig>,
        shutdown: CancellationToken,
    ) -> Arc<Self> {
        Arc::new(SocketIoFrontend {
            node,
            hub,
            config,
            shutdown,
        })
    }

    /// The hub of the app this front-end serves.
    pub fn hub(&self) -> &Arc<Hub> {
        &self.hub
    }

    /// A client's connection (its id is the Engine.IO `sid`, which Echo
    /// sends back as `X-Socket-ID`) and session, registered with the hub;
    /// `slot` is its place in the app's quota.
    pub(crate) fn open_session(
        &self,
        sid: &str,
        cookie: Option<Arc<str>>,
        slot: ConnectionSlot,
    ) -> (Arc<Connection>, Session) {
        let conn = Connection::with_id(
            SocketId::from_raw(sid),
            &SOCKETIO_WIRE,
            self.config.outbox_limit,
        );
        self.hub.connection_opened(&conn);
        let session = Session {
            conn: conn.clone(),
            subscriptions: Vec::new(),
            pending: HashSet::new(),
            in_flight: 0,
            rate: RateLimit::default(),
            cookie,
            _slot: slot,
            _counted: ClientCount::new(&self.hub),
            _tracked: self.hub.track(&conn),
        };
        (conn, session)
    }

    /// Ends a client's session: leaves its channels (logged with `reason`,
    /// socket.io's words, as laravel-echo-server's devMode prints them) and
    /// releases its connection slot.
    pub(crate) fn close_session<H: Handle>(&self, handle: &H, reason: &str) {
        let Some(mut session) = handle.cell().take() else {
            return;
        };
        for sub in std::mem::take(&mut session.subscriptions) {
            self.leave(&session.conn, &sub, &[]);
            tracing::debug!(
                "{} left channel: {} ({reason})",
                session.conn.socket_id,
                sub.channel
            );
        }
        session.conn.terminate(1000, "disconnected");
        self.hub.connection_closed(&session.conn);
        // Dropping `session` releases its connection slot.
    }

    /// Queues `frame` for the client.
    fn reply<H: Handle>(handle: &H, frame: Bytes) {
        handle.cell().with(|s| s.conn.send(frame));
    }

    /// Handles one Socket.IO packet (the text of an Engine.IO message,
    /// after its `4`).
    pub(crate) fn handle_packet<H: Handle>(self: &Arc<Self>, handle: &H, text: &str) -> After {
        self.hub.stats.received(text.len());
        match wire::parse(text) {
            Ok(Packet::Connect { namespace: "/" }) => {
                handle
                    .cell()
                    .with(|s| s.conn.send(wire::connected(s.conn.socket_id.as_str())));
            }
            Ok(Packet::Connect { namespace }) => {
                Self::reply(handle, wire::invalid_namespace(namespace));
            }
            Ok(Packet::Disconnect) => return After::Disconnect,
            Ok(Packet::Event { name, arg }) => match name.as_str() {
                "subscribe" => self.subscribe(handle, arg),
                "unsubscribe" => self.unsubscribe(handle, arg),
                "client event" => self.client_event(handle, arg),
                _ => self.hub.stats.error("unknown_event"),
            },
            Ok(Packet::Other) => {}
            Err(problem) => {
                tracing::debug!(problem, "bad Socket.IO packet");
                self.hub.stats.error("bad_packet");
            }
        }
        After::Continue
    }

    fn subscribe<H: Handle>(self: &Arc<Self>, handle: &H, arg: Option<&RawValue>) {
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
            Err(_) => return Self::reply(handle, wire::subscription_error(&channel, 400)),
        };
        let Some((already, held, cookie, socket_id)) = handle.cell().with(|s| {
            let already = s.subscriptions.iter().any(|x| *x.channel == *channel)
                || s.pending.contains(channel.as_str());
            let held = s.subscriptions.len() + s.pending.len().max(s.in_flight);
            (already, held, s.cookie.clone(), s.conn.socket_id.clone())
        }) else {
            return;
        };
        if already {
            return; // subscribed, or its auth call is in flight: no second call
        }
        if let Some(problem) = rules::subscription_limit_refusal(&self.hub.app, held) {
            tracing::debug!(channel, problem, "Socket.IO subscription refused");
            self.hub.stats.error("subscription_refused");
            return Self::reply(
                handle,
                wire::subscription_error(&channel, rules::SUBSCRIPTION_LIMIT_STATUS),
            );
        }
        match spec.kind {
            ChannelKind::ServerToUser => {
                Self::reply(handle, wire::subscription_error(&channel, 403))
            }
            ChannelKind::Public => self.join(handle, &spec, None),
            _ => {
                let Some(endpoint) = self.hub.app.auth_endpoint.clone() else {
                    tracing::warn!(
                        channel,
                        "a Socket.IO client asked for a private channel but the app has no auth_endpoint"
                    );
                    return Self::reply(handle, wire::subscription_error(&channel, 403));
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
                handle.cell().with(|s| {
                    s.in_flight += 1;
                    s.pending.insert(channel.as_str().into())
                });
                let (this, handle, timeout) = (
                    self.clone(),
                    handle.clone(),
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
                    let still_wanted = handle
                        .cell()
                        .with(|s| {
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
                            tracing::debug!("{socket_id} authenticated for: {channel}");
                            this.join(&handle, &spec, channel_data.as_deref())
                        }
                        Verdict::Refused { status, reason } => {
                            tracing::debug!(
                                channel,
                                status,
                                reason,
                                "{socket_id} could not be authenticated to {channel}"
                            );
                            this.hub.stats.error("subscription_refused");
                            Self::reply(&handle, wire::subscription_error(&channel, status));
                        }
                    }
                });
            }
        }
    }

    fn join<H: Handle>(
        self: &Arc<Self>,
        handle: &H,
        spec: &ChannelSpec<'_>,
        channel_data: Option<&str>,
    ) {
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
                    return Self::reply(handle, wire::subscription_error(channel, 500));
                }
            }
        } else {
            None
        };
        // Interest-based routing: join once this node gets the channel's
        // events from every node (at once, unless it is new here).
        let interest = self.hub.interest(channel);
        if !interest.is_routed() {
            return self.await_route(handle, channel, member, interest);
        }
        self.join_routed(handle, spec, member);
    }

    /// Joins once the channel's route is up (bounded by `ROUTE_WAIT`), if
    /// the client still wants it then; `interest` is held meanwhile.
    fn await_route<H: Handle>(
        self: &Arc<Self>,
        handle: &H,
        channel: &str,
        member: Option<Member>,
        interest: Interest,
    ) {
        handle.cell().with(|s| s.pending.insert(channel.into()));
        let (this, handle, channel) = (self.clone(), handle.clone(), channel.to_string());
        tokio::spawn(async move {
            if !interest.routed(ROUTE_WAIT).await {
                tracing::warn!(
                    channel,
                    "the cluster took too long to route a channel; joining anyway"
                );
            }
            let still_wanted = handle
                .cell()
                .with(|s| s.pending.remove(channel.as_str()))
                .unwrap_or(false);
            if let (true, Ok(spec)) = (still_wanted, ChannelSpec::parse(&channel)) {
                this.join_routed(&handle, &spec, member);
            }
            drop(interest);
        });
    }

    fn join_routed<H: Handle>(&self, handle: &H, spec: &ChannelSpec<'_>, member: Option<Member>) {
        let channel = spec.name;
        handle.cell().with(|session| {
            let member_key = member.as_ref().map(|m| m.key.clone());
            let conn = &session.conn;
            let joined = self.hub.subscribe(conn, spec, member, |joined| {
                if let Some(members) = joined.members.as_deref() {
                    conn.send(wire::presence_subscribed(channel, members));
                }
            });
            if let Err(JoinError::PresenceFull(_)) = joined {
                conn.send(wire::subscription_error(channel, 403));
                return;
            }
            if let Some(key) = &member_key {
                self.hub.add_user_connection(key, conn);
            }
            if spec.cached
                && let Some(event) = self.hub.cached(channel)
            {
                conn.send_event(&event);
            }
            session.subscriptions.push(Subscription {
                channel: channel.into(),
                member: member_key,
            });
            tracing::debug!("{} joined channel: {channel}", conn.socket_id);
        });
    }

    fn unsubscribe<H: Handle>(&self, handle: &H, arg: Option<&RawValue>) {
        #[derive(Deserialize)]
        struct Unsubscribe {
            channel: String,
        }
        let Some(Ok(data)) = arg.map(|a| serde_json::from_str::<Unsubscribe>(a.get())) else {
            return;
        };
        handle.cell().with(|session| {
            session.pending.remove(data.channel.as_str());
            if let Some(pos) = session
                .subscriptions
                .iter()
                .position(|s| *s.channel == *data.channel)
            {
                let sub = session.subscriptions.swap_remove(pos);
                self.leave(&session.conn, &sub, &session.subscriptions);
                tracing::debug!(
                    "{} left channel: {} (unsubscribed)",
                    session.conn.socket_id,
                    sub.channel
                );
            }
        });
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

    fn client_event<H: Handle>(&self, handle: &H, arg: Option<&RawValue>) {
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
        let channel = msg.channel.as_deref();
        let checked = handle.cell().with(|session| {
            let sub = channel.and_then(|c| session.subscriptions.iter().find(|s| &*s.channel == c));
            // As laravel-echo-server does, refused whispers are dropped
            // silently: the Socket.IO protocol has no error event for them.
            if rules::client_event_refusal(&self.hub.app, channel, sub.is_some(), data.len())
                .is_some()
            {
                self.hub.stats.error("client_event_refused");
                return None;
            }
            let user_id = sub?.member.clone();
            if !session.rate.allow(self.hub.app.client_event_rate) {
                self.hub.stats.error("client_event_rate_limited");
                return None;
            }
            Some((user_id, session.conn.socket_id.clone()))
        });
        let (Some(Some((user_id, socket_id))), Some(channel)) = (checked, channel) else {
            return;
        };
        let event = Event::new(
            channel,
            EventKind::Message {
                name: name.into(),
                data: RawJson::from_validated(data),
                user_id,
            },
            Some(socket_id),
        );
        crate::client_event_hook::relay(&self.node, &self.hub, event, None);
    }
}
