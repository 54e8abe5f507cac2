//! The core's one stream of happenings: what happens on the server, for
//! webhooks, the watchlist, metrics and the dashboard to subscribe to.
//!
//! A [`Happening`] names its app and one of three scopes, visible in its
//! type ([`What`]):
//!
//! - [`What::Cluster`] — **once per cluster**: the whole cluster emits it on
//!   exactly one node (the node whose delta decided "first/last anywhere",
//!   the node a client event entered, the node that won the reap lock of a
//!   dead node). Webhooks subscribe to these: every node sends only what it
//!   emitted, so each webhook leaves the cluster once.
//! - [`What::Seen`] — **on every node**: the cluster-wide view changed
//!   (a watched user came online or went offline anywhere); each node emits
//!   it for its own clients (the watchlist).
//! - [`What::Node`] — **node-local**: this node's connections and
//!   subscriptions, for a node's dashboard and metrics.
//!
//! Occupancy, presence and online users are **settled**: a
//! `ChannelVacated` / `MemberRemoved` / `UserOffline` is emitted only once it
//! held for [`HOLD`] without a come-back, and a come-back within the hold is
//! not emitted either (a page reload emits nothing). The `Node` scope is
//! never held.
//!
//! Subscribers call [`Happenings::subscribe`] and get a bounded
//! `tokio::sync::broadcast` receiver: a subscriber that falls more than
//! [`CAPACITY`] happenings behind loses the oldest (`RecvError::Lagged`
//! tells it how many), and never slows the emitter. Emitting while nobody
//! listens costs one atomic load: payloads are built only when a receiver
//! exists ([`Happenings::emit_with`]).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::broadcast;

use super::connection::{SocketId, WireVariant};
use super::event::RawJson;

/// How long a vacated channel, a removed member or an offline user is held
/// before it is reported (dropped when it comes back meanwhile).
pub const HOLD: Duration = Duration::from_secs(3);

/// Happenings a subscriber may fall behind before it loses the oldest.
pub const CAPACITY: usize = 16_384;

/// One thing that happened in one app.
#[derive(Debug, Clone)]
pub struct Happening {
    /// The app's id.
    pub app: Arc<str>,
    pub what: What,
}

/// A happening, by scope (see the module docs).
#[derive(Debug, Clone)]
pub enum What {
    /// Emitted on exactly one node for the whole cluster.
    Cluster(ClusterWide),
    /// Emitted on every node (the cluster-wide view as this node sees it).
    Seen(SeenEverywhere),
    /// About this node's own connections only.
    Node(NodeLocal),
}

/// Happenings of the whole cluster, emitted once (on one node).
#[derive(Debug, Clone, PartialEq)]
pub enum ClusterWide {
    /// The channel's first subscriber anywhere arrived (settled).
    ChannelOccupied { channel: Box<str> },
    /// The channel's last subscriber anywhere left, and it stayed empty for
    /// [`HOLD`].
    ChannelVacated { channel: Box<str> },
    /// A user's first connection anywhere joined a presence channel.
    MemberAdded {
        channel: Box<str>,
        user_id: Box<str>,
    },
    /// A user's last connection anywhere left a presence channel, and the
    /// user stayed away for [`HOLD`].
    MemberRemoved {
        channel: Box<str>,
        user_id: Box<str>,
    },
    /// A client event (Pusher `client-*` or a Socket.IO whisper) was
    /// relayed; `user_id` is set on presence channels.
    ClientEvent {
        channel: Box<str>,
        event: Box<str>,
        data: RawJson,
        socket_id: SocketId,
        user_id: Option<Box<str>>,
    },
    /// A client subscribed to a cache channel that holds no event.
    CacheMiss { channel: Box<str> },
    /// The number of subscriptions of a (non-presence) channel changed: the
    /// count known to the emitting node (the cluster's with the local
    /// adapter).
    SubscriptionCount { channel: Box<str>, count: usize },
}

/// The cluster-wide view, emitted on every node.
#[derive(Debug, Clone, PartialEq)]
pub enum SeenEverywhere {
    /// A user's first connection anywhere arrived (sign-in or presence).
    UserOnline { user_id: Box<str> },
    /// A user's last connection anywhere left and stayed away for [`HOLD`].
    UserOffline { user_id: Box<str> },
}

/// Happenings of this node's own connections.
#[derive(Debug, Clone, PartialEq)]
pub enum NodeLocal {
    ConnectionOpened {
        socket_id: SocketId,
        wire: WireVariant,
    },
    ConnectionClosed {
        socket_id: SocketId,
        wire: WireVariant,
    },
    Subscribed {
        socket_id: SocketId,
        channel: Box<str>,
    },
    Unsubscribed {
        socket_id: SocketId,
        channel: Box<str>,
    },
    /// An event entered through the HTTP API on this node.
    ApiEvent {
        channels: Vec<Box<str>>,
        event: Box<str>,
    },
}

impl Happening {
    /// Whether this happening is emitted once for the whole cluster.
    pub fn is_cluster_wide(&self) -> bool {
        matches!(self.what, What::Cluster(_))
    }
}

/// The node's happenings stream (one per node, shared by its apps' hubs).
#[derive(Clone)]
pub struct Happenings {
    tx: broadcast::Sender<Arc<Happening>>,
}

impl Default for Happenings {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Happenings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Happenings")
            .field("receivers", &self.tx.receiver_count())
            .finish()
    }
}

impl Happenings {
    pub fn new() -> Self {
        let (tx, _) = broadcast::channel(CAPACITY);
        Happenings { tx }
    }

    /// A new receiver of everything emitted from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Happening>> {
        self.tx.subscribe()
    }

    /// Whether anybody listens (emitting is free otherwise).
    pub fn is_observed(&self) -> bool {
        self.tx.receiver_count() > 0
    }

    /// Emits the happening `make` builds, only if somebody listens.
    pub fn emit_with(&self, app: &Arc<str>, make: impl FnOnce() -> What) {
        if self.is_observed() {
            let _ = self.tx.send(Arc::new(Happening {
                app: app.clone(),
                what: make(),
            }));
        }
    }

    pub fn cluster(&self, app: &Arc<str>, make: impl FnOnce() -> ClusterWide) {
        self.emit_with(app, || What::Cluster(make()));
    }

    pub fn seen(&self, app: &Arc<str>, make: impl FnOnce() -> SeenEverywhere) {
        self.emit_with(app, || What::Seen(make()));
    }

    pub fn node(&self, app: &Arc<str>, make: impl FnOnce() -> NodeLocal) {
        self.emit_with(app, || What::Node(make()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn nothing_is_built_without_receivers_and_everything_reaches_one() {
        let h = Happenings::new();
        let app: Arc<str> = "1".into();
        h.cluster(&app, || panic!("built without a receiver"));
        let mut rx = h.subscribe();
        h.cluster(&app, || ClusterWide::CacheMiss {
            channel: "cache-a".into(),
        });
        let got = rx.recv().await.unwrap();
        assert!(got.is_cluster_wide());
        assert_eq!(&*got.app, "1");
        assert!(matches!(
            &got.what,
            What::Cluster(ClusterWide::CacheMiss { channel }) if &**channel == "cache-a"
        ));
    }
}
