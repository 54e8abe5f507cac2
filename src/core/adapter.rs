//! The adapter: how an event that enters one node reaches the subscribers
//! of every node, and how presence and queries see the whole cluster. The
//! core defines the seam; implementations depend on the core, never the
//! reverse, so a Redis, NATS or Redis Cluster adapter plugs in without the
//! front-ends knowing.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Weak};

use super::connection::SocketId;
use super::event::{Event, Member};
use super::hub::{ChannelSummary, Hub};
use super::interest::Interest;
use super::node::Node;
use super::settle::Subject;

/// A cluster node as this node sees it (the dashboard's cluster panel).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSeen {
    pub id: String,
    /// This process.
    pub this: bool,
    /// Heartbeating (within `node_timeout`) as of the last heartbeat.
    pub alive: bool,
    /// Milliseconds since this node last heard from it (`None` for itself).
    pub last_seen_ms: Option<u64>,
}

/// A boxed future, for the adapter's asynchronous queries.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Cross-node fan-out, presence and queries.
///
/// `publish` must deliver to local subscribers too (exactly once) and must
/// not wait for remote delivery. Presence hooks are called by the hub when
/// a user's *local* connection count goes 0→1 or 1→0; the adapter decides
/// whether that is the user's first/last connection cluster-wide and has
/// `member_added`/`member_removed` delivered accordingly.
pub trait Adapter: Send + Sync + 'static {
    /// A short name for logs and `/ready` (`local`, `redis`, ...).
    fn name(&self) -> &'static str;

    /// Called once the node exists, so the adapter can deliver remote
    /// events to its hubs.
    fn attach(&self, _node: Weak<Node>) {}

    /// Delivers `event` to every subscriber of its channel in `hub`'s app,
    /// on every node.
    fn publish(&self, hub: &Arc<Hub>, event: Arc<Event>);

    /// Called under the channel's lock, before the joiner is confirmed, for
    /// a user's first connection on this node. An adapter that can announce
    /// the member without touching the hub (a cluster message) does so here
    /// and returns true; `member_joined` is then not called.
    fn member_joining(
        &self,
        _hub: &Hub,
        _channel: &str,
        _member: &Member,
        _socket: &SocketId,
    ) -> bool {
        false
    }

    /// A user's first connection on this node joined a presence channel
    /// (after the channel's lock is released, unless `member_joining`
    /// announced it).
    fn member_joined(&self, hub: &Hub, channel: &str, member: &Member, socket: &SocketId) {
        hub.announce_member_added(channel, member.clone(), Some(socket.clone()));
        hub.arrived(member_subject(channel, member));
    }

    /// A user's last connection on this node left a presence channel.
    fn member_left(&self, hub: &Hub, channel: &str, member: &Member) {
        hub.announce_member_removed(channel, member.clone());
        hub.departed(member_subject(channel, member));
    }

    /// The first subscriber of `channel` on this node arrived (called under
    /// the channel's lock: keep it short, never touch the hub's channels).
    /// The adapter decides whether the channel is occupied cluster-wide and
    /// has the settled verdict reported (see [`crate::core::settle`]).
    fn channel_occupied(&self, hub: &Hub, channel: &str) {
        hub.arrived(Subject::Channel(channel.into()));
    }

    /// The last subscriber of `channel` on this node left (under the
    /// channel's lock, as above).
    fn channel_vacated(&self, hub: &Hub, channel: &str) {
        hub.departed(Subject::Channel(channel.into()));
    }

    /// A user's first connection on this node (sign-in or presence), under
    /// the hub's user lock.
    fn user_connected(&self, hub: &Hub, user: &str) {
        hub.arrived(Subject::User(user.into()));
    }

    /// A user's last connection on this node left, under the user lock.
    fn user_disconnected(&self, hub: &Hub, user: &str) {
        hub.departed(Subject::User(user.into()));
    }

    /// The hold of a departure this adapter handed to [`Hub::hold`] ended.
    fn hold_expired(&self, hub: &Hub, subject: Subject, generation: u64) {
        hub.settle_local(subject, generation);
    }

    /// Which of `users` are online anywhere (settled: a user whose
    /// departure is being held still counts).
    fn users_online(&self, hub: &Hub, users: &[Box<str>]) -> Vec<Box<str>> {
        hub.local_users_among(users)
    }

    /// Whether a channel's subscription count on this node is its count in
    /// the whole cluster (true for a single node): `subscription_count`
    /// happenings are emitted only then.
    fn counts_cluster_wide(&self) -> bool {
        true
    }

    /// Presence members that live on other nodes.
    fn remote_members(&self, _hub: &Hub, _channel: &str) -> Vec<Member> {
        Vec::new()
    }

    /// Occupied channels across the cluster.
    fn channels(
        &self,
        hub: Arc<Hub>,
        prefix: Option<String>,
    ) -> BoxFuture<'static, Vec<ChannelSummary>> {
        Box::pin(async move { hub.channels(prefix.as_deref()) })
    }

    /// Closes `user`'s connections on every node.
    fn terminate_user(&self, hub: &Arc<Hub>, user: &str) {
        hub.terminate_user(user);
    }

    /// Whether the adapter can currently reach the other nodes.
    fn healthy(&self) -> bool {
        true
    }

    /// This node and the others it knows of; empty for a single node.
    fn nodes(&self) -> Vec<NodeSeen> {
        Vec::new()
    }

    /// Resolves once the adapter has the cluster's state (bounded by the
    /// implementation), so a late node serves no stale presence.
    fn ready(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }

    /// Leaves the cluster cleanly at shutdown.
    fn shutdown(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }

    // --- interest-based routing (issue 15) ---

    /// A claim on `channel`'s events in `app` (see [`crate::core::interest`]).
    /// The hub takes one when a channel gets its first local subscriber and
    /// drops it with the last; front-ends take one before confirming a
    /// subscription and wait for [`Interest::is_routed`]. Must not block:
    /// it is called under the hub's shard lock. An engine that sends every
    /// event to every node keeps the default.
    fn channel_interest(&self, _app: &str, _channel: &str) -> Interest {
        Interest::always()
    }
}

/// The subject of a presence membership.
pub fn member_subject(channel: &str, member: &Member) -> Subject {
    Subject::Member {
        channel: channel.into(),
        user: member.key.clone(),
    }
}

/// The single-node adapter: publishing is the local fan-out.
#[derive(Debug, Default)]
pub struct LocalAdapter;

impl Adapter for LocalAdapter {
    fn name(&self) -> &'static str {
        "local"
    }

    fn publish(&self, hub: &Arc<Hub>, event: Arc<Event>) {
        hub.publish(&event);
    }
}
