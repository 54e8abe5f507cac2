//! One Pusher connection: its task, its subscriptions, its heartbeat.
//!
//! The task waits on four things: the client's next frame, its outbox (the
//! fan-out queued frames), its heartbeat timer, and the server's shutdown.
//! Everything it sends, replies included, goes through the outbox, so a
//! connection's frames leave in one order and in batches (one write per
//! wake-up, however many frames were queued). While the task is not writing
//! and the outbox is empty, the outbox hands a frame straight to the socket
//! (a direct write, see `core::connection::DirectWrite`): a fan-out to idle
//! connections costs one `send` each and wakes no task.
//!
//! The socket is [`LeanSocket`]; an idle connection holds no read or write
//! buffer, and this task's future is kept small (readiness and auth waits
//! are `poll_fn`s, rare waits are boxed): see the size test below.
//!
//! The transport seam: `Session` is the Pusher protocol of one connection
//! (subscriptions, presence, sign-in, client events, auth calls), fed client
//! messages as text by `Session::handle_text` and answering only through
//! its [`Connection`]'s outbox. A transport owns the loop around it: this
//! file's [`run`] over the lean WebSocket, and
//! [`crate::pusher::fallback`] over pusher-js's HTTP streaming and polling
//! sessions. The protocol is written once.

use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tokio_util::sync::CancellationToken;

use super::protocol::{
    self as wire, ClientFrame, PUSHER_WIRE, SigninData, SubscribeData, UnsubscribeData,
};
use super::signin;
use crate::auth_endpoint::{self, AuthCall, Verdict};
use crate::config::ServerConfig;
use crate::core::channel::{ChannelKind, ChannelSpec};
use crate::core::connection::{CloseRequest, Connection};
use crate::core::event::{Event, EventKind, Member, RawJson};
use crate::core::hub::{Hub, JoinError};
use crate::core::interest::{Interest, ROUTE_WAIT};
use crate::core::node::Node;
use crate::core::rules::{self, RateLimit};
use crate::signing;
use crate::ws::LeanSocket;
use crate::ws::lean::{Incoming, Step};
use crate::ws::outbox::{Written, write_outbox};

/// How long a close handshake or a stuck write may take.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// Close codes the session itself uses (reference §3).
pub(crate) const RECONNECT: u16 = 4200;
pub(crate) const PONG_MISSED: u16 = 4201;
const CLIENT_EVENT_REJECTED: u16 = 4301;
const UNAUTHORIZED: u16 = 4009;

/// A subscription of this connection: the channel and, on presence
/// channels, the user key it joined as.
struct Subscription {
    channel: Box<str>,
    member: Option<Box<str>>,
}

/// A subscription waiting for the app's auth endpoint.
type PendingAuth =
    std::pin::Pin<Box<dyn std::future::Future<Output = (SubscribeData, Verdict)> + Send>>;

/// The Pusher protocol state of one connection, whatever its transport.
pub(crate) struct Session {
    node: Arc<Node>,
    hub: Arc<Hub>,
    conn: Arc<Connection>,
    subscriptions: Vec<Subscription>,
    /// The signed-in user (`pusher:signin`).
    user: Option<Box<str>>,
    /// The users the signed-in user watches (`user_data.watchlist`).
    watching: Vec<Box<str>>,
    rate: RateLimit,
    /// The handshake's `Cookie`, forwarded to the app's auth endpoint.
    cookie: Option<Arc<str>>,
    /// Auth endpoint calls in flight (allocated on first use).
    pending: Option<FuturesUnordered<PendingAuth>>,
    /// The channels of those calls: one call per channel at a time, and they
    /// count toward the subscription cap. A channel leaves this list when
    /// its answer arrives or the client unsubscribes (the answer is then
    /// ignored).
    pending_channels: Vec<Box<str>>,
    /// Channels waiting for their cluster route (interest-based routing),
    /// with the claim that keeps the route wanted until the join and when
    /// the wait ends.
    routing: Vec<(Box<str>, Interest, Instant)>,
}

/// Waits for the next auth endpoint answer; never resolves when none is
/// pending. (A `poll_fn`, not an `async fn`: it is part of every idle
/// connection's task, and this way it is one pointer.)
fn next_auth(
    pending: &mut Option<FuturesUnordered<PendingAuth>>,
) -> impl Future<Output = (SubscribeData, Verdict)> + '_ {
    std::future::poll_fn(move |cx| match pending {
        Some(calls) if !calls.is_empty() => match calls.poll_next_unpin(cx) {
            Poll::Ready(Some(answer)) => Poll::Ready(answer),
            _ => Poll::Pending,
        },
        _ => Poll::Pending,
    })
}

/// Runs a connection to completion. The caller holds the connection's
/// `ConnectionSlot` (from `hub.try_connect()`) until this returns.
pub async fn run(
    mut socket: LeanSocket,
    node: Arc<Node>,
    hub: Arc<Hub>,
    config: Arc<ServerConfig>,
    shutdown: CancellationToken,
    cookie: Option<Arc<str>>,
) {
    let conn = Connection::new(&PUSHER_WIRE, config.outbox_limit);
    // Closed with 4001/4003 if the app is deleted or disabled meanwhile.
    let _tracked = hub.track(&conn);
    let activity = Duration::from_secs(hub.app.activity_timeout);
    let pong_timeout = Duration::from_secs(config.pong_timeout);
    let write_timeout = Duration::from_secs(config.write_timeout);
    hub.connection_opened(&conn);
    conn.send(wire::connection_established(
        conn.socket_id.as_str(),
        hub.app.activity_timeout,
    ));
    let mut session = Session::new(node, hub, conn.clone(), cookie);

    let mut last_seen = Instant::now();
    let mut ping_sent: Option<Instant> = None;
    let timer = tokio::time::sleep(activity);
    tokio::pin!(timer);

    // Fan-outs write straight to the socket while this task is not writing;
    // the first drain (the connection_established above) starts with the
    // task as the writer.
    conn.set_direct(Some(socket.direct_writer()));
    loop {
        tokio::select! {
            biased;
            () = shutdown.cancelled() => {
                conn.close_with(
                    Some(wire::error(Some(RECONNECT), "server is shutting down; reconnect")),
                    CloseRequest { code: RECONNECT, reason: "server shutting down" },
                );
                if let Written::Close(close) = write_outbox(&mut socket, &conn, CLOSE_TIMEOUT).await {
                    Box::pin(socket.close(close.code, close.reason, CLOSE_TIMEOUT)).await;
                }
                break;
            }
            () = conn.ready() => match write_outbox(&mut socket, &conn, write_timeout).await {
                Written::Done => {}
                Written::Failed => break,
                Written::Close(close) => {
                    session.hub.stats.error(match close.code {
                        4100 => "slow_consumer",
                        PONG_MISSED => "pong_missed",
                        _ => "closed_by_server",
                    });
                    Box::pin(socket.close(close.code, close.reason, CLOSE_TIMEOUT)).await;
                    break;
                }
            },
            readable = socket.readable() => {
                if readable.is_err() {
                    break;
                }
                last_seen = Instant::now();
                ping_sent = None;
                match socket.read_available(|message| session.handle_message(message)) {
                    Step::Open => {
                        // Pongs for the client's pings.
                        if socket.wants_flush()
                            && matches!(write_outbox(&mut socket, &conn, write_timeout).await, Written::Failed)
                        {
                            break;
                        }
                    }
                    Step::Closed => {
                        conn.drain();
                        Box::pin(socket.finish(CLOSE_TIMEOUT)).await;
                        break;
                    }
                    Step::Failed(code) => {
                        tracing::debug!(socket_id = %conn.socket_id, code, "websocket protocol error");
                        session.hub.stats.error("websocket_protocol");
                        conn.drain();
                        Box::pin(socket.finish(CLOSE_TIMEOUT)).await;
                        break;
                    }
                }
            }
            (data, verdict) = next_auth(&mut session.pending) => session.auth_answered(data, verdict),
            () = &mut timer => {
                let now = Instant::now();
                match ping_sent {
                    Some(_) => conn.close_with(
                        Some(wire::error(Some(PONG_MISSED), "no pong received in time")),
                        CloseRequest { code: PONG_MISSED, reason: "pong reply not received" },
                    ),
                    None if now.duration_since(last_seen) >= activity => {
                        conn.send(wire::ping());
                        ping_sent = Some(now);
                        timer.as_mut().reset((now + pong_timeout).into());
                    }
                    None => timer.as_mut().reset((last_seen + activity).into()),
                }
            }
        }
    }
    conn.set_direct(None);
    session.cleanup();
}

impl Session {
    /// The session of a connection the transport registered with `hub`
    /// (it holds the connection slot); `cookie` goes to the auth endpoint.
    pub(crate) fn new(
        node: Arc<Node>,
        hub: Arc<Hub>,
        conn: Arc<Connection>,
        cookie: Option<Arc<str>>,
    ) -> Session {
        Session {
            node,
            hub,
            conn,
            subscriptions: Vec::new(),
            user: None,
            watching: Vec::new(),
            rate: RateLimit::default(),
            cookie,
            pending: None,
            pending_channels: Vec::new(),
            routing: Vec::new(),
        }
    }

    /// Waits for the next auth endpoint answer (never resolves while none
    /// is pending); hand it to [`Session::auth_answered`].
    pub(crate) fn next_auth(&mut self) -> impl Future<Output = (SubscribeData, Verdict)> + '_ {
        next_auth(&mut self.pending)
    }

    fn reply(&self, frame: bytes::Bytes) {
        self.conn.send(frame);
    }

    fn error(&self, code: Option<u16>, message: &str) {
        self.reply(wire::error(code, message));
    }

    fn handle_message(&mut self, message: Incoming<'_>) {
        let text = match message {
            Incoming::Text(text) => text,
            // Answered by the WebSocket layer; counts as activity.
            Incoming::Ping(_) | Incoming::Pong(_) => return,
            Incoming::Binary(_) => {
                self.hub.stats.error("binary_frame");
                self.error(
                    None,
                    "binary frames are not part of the Pusher protocol; send JSON text",
                );
                return;
            }
        };
        self.handle_text(text);
    }

    /// Handles one client message (a Pusher protocol JSON text), from any
    /// transport.
    pub(crate) fn handle_text(&mut self, text: &str) {
        self.hub.stats.received(text.len());
        let frame = match ClientFrame::parse(text) {
            Ok(frame) => frame,
            Err(e) => {
                self.hub.stats.error("bad_json");
                self.error(
                    None,
                    &format!(
                        "invalid message: expected a JSON object with an \"event\" field ({e})"
                    ),
                );
                return;
            }
        };
        match &*frame.event {
            "pusher:ping" => self.reply(wire::pong()),
            "pusher:pong" => {}
            "pusher:subscribe" => match frame.data_as::<SubscribeData>() {
                Ok(data) => self.subscribe(data),
                Err(e) => self.error(
                    None,
                    &format!("pusher:subscribe needs data {{\"channel\": ...}}: {e}"),
                ),
            },
            "pusher:unsubscribe" => match frame.data_as::<UnsubscribeData>() {
                Ok(data) => self.unsubscribe(&data.channel),
                Err(e) => self.error(
                    None,
                    &format!("pusher:unsubscribe needs data {{\"channel\": ...}}: {e}"),
                ),
            },
            "pusher:signin" => match frame.data_as::<SigninData>() {
                Ok(data) => self.signin(data),
                Err(e) => self.error(
                    Some(UNAUTHORIZED),
                    &format!("pusher:signin needs data {{\"auth\", \"user_data\"}}: {e}"),
                ),
            },
            name if name.starts_with("client-") => self.client_event(&frame),
            name => {
                self.hub.stats.error("unknown_event");
                self.error(None, &format!("unsupported event {name:?}"));
            }
        }
    }

    fn subscription_error(&self, channel: &str, kind: &str, message: &str, status: u16) {
        self.hub.stats.error("subscription_refused");
        self.reply(wire::subscription_error(channel, kind, message, status));
    }

    fn subscribe(&mut self, data: SubscribeData) {
        let channel = data.channel.as_str();
        let spec = match ChannelSpec::parse(channel) {
            Ok(spec) => spec,
            Err(e) => {
                return self.subscription_error(channel, "InvalidChannel", &e.to_string(), 400);
            }
        };
        if self.subscriptions.iter().any(|s| &*s.channel == channel) {
            // Already subscribed: confirm again without joining twice.
            let members = self.hub.members(channel);
            let refs: Vec<&Member> = members.iter().collect();
            return self.reply(wire::subscription_succeeded(
                channel,
                spec.is_presence().then_some(&refs[..]),
            ));
        }
        if self.pending_channels.iter().any(|c| &**c == channel) {
            // Its auth call is in flight; that answer confirms or refuses.
            return;
        }
        // Calls abandoned by an unsubscribe still run until they answer or
        // time out: they count too, so sub/unsub loops cannot pile them up.
        let in_flight = self.pending.as_ref().map_or(0, FuturesUnordered::len);
        let held = self.subscriptions.len() + in_flight.max(self.pending_channels.len());
        if let Some(message) = rules::subscription_limit_refusal(&self.hub.app, held) {
            return self.subscription_error(
                channel,
                "LimitReached",
                &message,
                rules::SUBSCRIPTION_LIMIT_STATUS,
            );
        }
        if spec.kind == ChannelKind::ServerToUser
            && spec.server_to_user_id() != self.user.as_deref()
        {
            return self.subscription_error(
                channel,
                "AuthError",
                "only the connection signed in as this user may subscribe to its #server-to-user channel",
                403,
            );
        }
        if spec.needs_auth() && data.auth.is_none() && self.hub.app.auth_endpoint.is_some() {
            return self.ask_auth_endpoint(data);
        }
        let channel_data = data.channel_data.as_deref().filter(|_| spec.is_presence());
        if spec.needs_auth() {
            let signed =
                signing::channel_auth_string(self.conn.socket_id.as_str(), channel, channel_data);
            let auth = data.auth.as_deref().unwrap_or("");
            if !signing::verify_auth(&self.hub.app.key, &self.hub.app.secret, auth, &signed) {
                let message = format!(
                    "Invalid signature: Expected HMAC SHA256 hex digest of {signed}, but got {}",
                    auth.split_once(':').map_or(auth, |(_, sig)| sig)
                );
                return self.subscription_error(channel, "AuthError", &message, 401);
            }
        }
        self.join(&spec, channel_data);
    }

    /// Asks the app's auth endpoint (with this client's cookie); the answer
    /// arrives in [`Session::auth_answered`].
    fn ask_auth_endpoint(&mut self, data: SubscribeData) {
        let Some(endpoint) = self.hub.app.auth_endpoint.clone() else {
            return;
        };
        let socket_id = self.conn.socket_id.clone();
        let cookie = self.cookie.clone();
        let timeout = Duration::from_secs(self.hub.app.auth_timeout);
        self.pending_channels.push(data.channel.as_str().into());
        let call = Box::pin(async move {
            let verdict = auth_endpoint::authorize(AuthCall {
                endpoint: &endpoint,
                channel: &data.channel,
                socket_id: socket_id.as_str(),
                headers: &[],
                handshake_cookie: cookie.as_deref(),
                timeout,
            })
            .await;
            (data, verdict)
        });
        self.pending
            .get_or_insert_with(FuturesUnordered::new)
            .push(call);
    }

    pub(crate) fn auth_answered(&mut self, data: SubscribeData, verdict: Verdict) {
        let channel = data.channel.as_str();
        let Some(pos) = self.pending_channels.iter().position(|c| &**c == channel) else {
            return; // unsubscribed while the call was in flight
        };
        self.pending_channels.swap_remove(pos);
        let Ok(spec) = ChannelSpec::parse(channel) else {
            return;
        };
        if self.subscriptions.iter().any(|s| &*s.channel == channel) {
            return;
        }
        match verdict {
            Verdict::Allowed { channel_data } => self.join(&spec, channel_data.as_deref()),
            Verdict::Refused { status, reason } => {
                self.subscription_error(channel, "AuthError", &reason, status)
            }
        }
    }

    /// Joins an authorised channel: presence member, hub, cache replay.
    fn join(&mut self, spec: &ChannelSpec<'_>, channel_data: Option<&str>) {
        let channel = spec.name;
        let member = if spec.is_presence() {
            match rules::presence_member(channel_data, self.hub.app.max_presence_member_bytes) {
                Ok(member) => Some(member),
                Err(message) => {
                    return self.subscription_error(channel, "InvalidChannelData", &message, 400);
                }
            }
        } else {
            None
        };
        // Interest-based routing: confirm only once this node gets the
        // channel's events from every node (at once, unless it is new here).
        let _interest = match self.routing.iter().position(|(c, ..)| &**c == channel) {
            // An answer of an earlier wait (abandoned by an unsubscribe)
            // may come first: keep waiting until routed or out of time.
            Some(pos) => {
                let (_, interest, deadline) = &self.routing[pos];
                if !interest.is_routed() && Instant::now() < *deadline {
                    let wait = interest.routed(deadline.saturating_duration_since(Instant::now()));
                    self.pending_channels.push(channel.into());
                    return self.push_route_wait(channel, channel_data, wait);
                }
                if !interest.is_routed() {
                    tracing::warn!(
                        channel,
                        "the cluster took too long to route a channel; confirming anyway"
                    );
                }
                self.routing.swap_remove(pos).1
            }
            None => {
                let interest = self.hub.interest(channel);
                if !interest.is_routed() {
                    return self.await_route(channel, channel_data, interest);
                }
                interest
            }
        };
        let member_key = member.as_ref().map(|m| m.key.clone());
        let conn = &self.conn;
        let joined = self.hub.subscribe(conn, spec, member, |joined| {
            conn.send(wire::subscription_succeeded(
                channel,
                joined.members.as_deref(),
            ));
        });
        if let Err(JoinError::PresenceFull(max)) = joined {
            return self.subscription_error(
                channel,
                "LimitReached",
                &format!("presence channel is full: at most {max} members"),
                403,
            );
        }
        if let Some(key) = &member_key {
            self.hub.add_user_connection(key, &self.conn);
        }
        if spec.cached {
            match self.hub.cached(channel) {
                Some(event) => self.reply(event.encoded(&PUSHER_WIRE)),
                None => {
                    self.reply(wire::cache_miss(channel));
                    self.hub.cache_missed(channel);
                }
            }
        }
        self.subscriptions.push(Subscription {
            channel: channel.into(),
            member: member_key,
        });
    }

    /// Joins once the channel's route is up (bounded by `ROUTE_WAIT`): the
    /// wait rides with the auth calls and answers as an allowed one.
    fn await_route(&mut self, channel: &str, channel_data: Option<&str>, interest: Interest) {
        let wait = interest.routed(ROUTE_WAIT);
        self.routing
            .push((channel.into(), interest, Instant::now() + ROUTE_WAIT));
        self.pending_channels.push(channel.into());
        self.push_route_wait(channel, channel_data, wait);
    }

    fn push_route_wait(
        &mut self,
        channel: &str,
        channel_data: Option<&str>,
        wait: impl Future<Output = bool> + Send + 'static,
    ) {
        let data = SubscribeData {
            channel: channel.to_string(),
            auth: None,
            channel_data: channel_data.map(str::to_string),
        };
        let call = Box::pin(async move {
            wait.await;
            let channel_data = data.channel_data.clone();
            (data, Verdict::Allowed { channel_data })
        });
        self.pending
            .get_or_insert_with(FuturesUnordered::new)
            .push(call);
    }

    fn unsubscribe(&mut self, channel: &str) {
        self.pending_channels.retain(|c| &**c != channel);
        self.routing.retain(|(c, ..)| &**c != channel);
        let Some(pos) = self
            .subscriptions
            .iter()
            .position(|s| &*s.channel == channel)
        else {
            return;
        };
        let sub = self.subscriptions.swap_remove(pos);
        self.hub
            .unsubscribe(&self.conn, &sub.channel, sub.member.as_deref());
        if let Some(key) = sub.member {
            self.forget_user_if_unused(&key);
        }
    }

    /// Drops the user registration once no presence subscription or sign-in
    /// refers to it any more.
    fn forget_user_if_unused(&self, key: &str) {
        let still_used = self.user.as_deref() == Some(key)
            || self
                .subscriptions
                .iter()
                .any(|s| s.member.as_deref() == Some(key));
        if !still_used {
            self.hub.remove_user_connection(key, &self.conn);
        }
    }

    fn signin(&mut self, data: SigninData) {
        let signed = signing::signin_string(self.conn.socket_id.as_str(), &data.user_data);
        if !signing::verify_auth(&self.hub.app.key, &self.hub.app.secret, &data.auth, &signed) {
            self.hub.stats.error("signin_refused");
            return self.reply(signin::signin_error(
                401,
                &format!("Invalid signin signature over {signed}"),
            ));
        }
        let user = match signin::parse_user_data(&data.user_data) {
            Ok(user) => user,
            Err(message) => {
                self.hub.stats.error("signin_refused");
                return self.reply(signin::signin_error(400, &message));
            }
        };
        if let Some(previous) = self.user.replace(user.id.as_str().into()) {
            self.forget_user_if_unused(&previous);
        }
        self.hub
            .unwatch(&self.conn, &std::mem::take(&mut self.watching));
        self.hub.add_user_connection(&user.id, &self.conn);
        self.reply(wire::signin_success(&data.user_data));
        if !user.watchlist.is_empty() {
            let online = self
                .hub
                .watch(&self.conn, &user.watchlist, signin::watchlist_events);
            if !online.is_empty() {
                let ids: Vec<&str> = online.iter().map(|u| &**u).collect();
                self.reply(signin::watchlist_events(true, &ids));
            }
            self.watching = user.watchlist;
        }
    }

    fn client_event(&mut self, frame: &ClientFrame<'_>) {
        let channel = frame.channel.as_deref();
        let sub = channel.and_then(|c| self.subscriptions.iter().find(|s| &*s.channel == c));
        let data = frame.data.map_or("null", |d| d.get());
        if let Some(refusal) =
            rules::client_event_refusal(&self.hub.app, channel, sub.is_some(), data.len())
        {
            self.hub.stats.error("client_event_refused");
            return self.error(None, &refusal);
        }
        let (Some(channel), Some(sub)) = (channel, sub) else {
            return;
        };
        if !self.rate.allow(self.hub.app.client_event_rate) {
            self.hub.stats.error("client_event_rate_limited");
            return self.error(
                Some(CLIENT_EVENT_REJECTED),
                &format!(
                    "client event rejected: more than {} per second",
                    self.hub.app.client_event_rate
                ),
            );
        }
        let event = Event::new(
            channel,
            EventKind::Message {
                name: (&*frame.event).into(),
                data: RawJson::from_validated(data),
                user_id: sub.member.clone(),
            },
            Some(self.conn.socket_id.clone()),
        );
        crate::client_event_hook::relay(&self.node, &self.hub, event, self.user.as_deref());
    }

    /// Leaves every channel and user registration; the transport calls it
    /// once, when the connection ends.
    pub(crate) fn cleanup(&mut self) {
        for sub in std::mem::take(&mut self.subscriptions) {
            self.hub
                .unsubscribe(&self.conn, &sub.channel, sub.member.as_deref());
            if let Some(key) = sub.member {
                self.hub.remove_user_connection(&key, &self.conn);
            }
        }
        if let Some(user) = self.user.take() {
            self.hub.remove_user_connection(&user, &self.conn);
        }
        self.hub
            .unwatch(&self.conn, &std::mem::take(&mut self.watching));
        self.hub.connection_closed(&self.conn);
        // The connection's quota slot is released by the caller's guard.
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::adapter::LocalAdapter;
    use crate::core::app::AppConfig;

    /// Every idle connection holds one of these futures: keep it small.
    #[tokio::test]
    async fn session_future_is_small() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let _client = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (stream, _) = listener.accept().await.unwrap();
        let node = Node::new(vec![AppConfig::default()], Arc::new(LocalAdapter));
        let hub = node.hubs()[0].clone();
        let future = run(
            LeanSocket::new(stream, &[], 1024),
            node,
            hub,
            Arc::new(ServerConfig::default()),
            CancellationToken::new(),
            None,
        );
        let size = std::mem::size_of_val(&future);
        eprintln!("session future: {size} bytes");
        // 992 bytes in a release build when this test was written.
        assert!(size <= 2048, "session future is {size} bytes");
    }
}
