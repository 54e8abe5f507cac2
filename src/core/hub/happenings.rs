//! The hub's part of the happenings machinery: the stream, the local
//! adapter's settled verdicts, node-local happenings and the watchlist.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

use super::Hub;
use crate::core::connection::{Connection, SocketId};
use crate::core::event::{Event, EventKind};
use crate::core::happenings::{ClusterWide, Happenings, NodeLocal, SeenEverywhere};
use crate::core::settle::{HoldQueue, Report, Settler, Subject};

/// A hub's part of the happenings machinery.
pub(super) struct HubHappenings {
    app_id: Arc<str>,
    stream: Happenings,
    /// The local adapter's held departures (see [`super::settle`]).
    settler: Mutex<Settler>,
    holds: Option<HoldQueue>,
    generation: AtomicU64,
    /// Watched user → connections watching them (`pusher:signin`'s
    /// watchlist), with the front-end's encoder of a watchlist notice.
    watchers: Mutex<HashMap<Box<str>, Vec<Watcher>>>,
}

/// Encodes a watchlist notice in a front-end's wire: online or offline,
/// and the user ids.
pub type WatchlistEncoder = fn(bool, &[&str]) -> bytes::Bytes;

struct Watcher {
    conn: Arc<Connection>,
    encode: WatchlistEncoder,
}

impl HubHappenings {
    pub(super) fn new(app_id: Arc<str>, stream: Happenings, holds: Option<HoldQueue>) -> Self {
        HubHappenings {
            app_id,
            stream,
            settler: Mutex::new(Settler::default()),
            holds,
            generation: AtomicU64::new(1),
            watchers: Mutex::new(HashMap::new()),
        }
    }
}

/// Happenings: the stream, the local adapter's settled verdicts, the
/// watchlist.
impl Hub {
    /// The node's happenings stream.
    pub fn happenings(&self) -> &Happenings {
        &self.events.stream
    }

    /// The app id, shared by every happening of this app.
    pub fn app_id(&self) -> &Arc<str> {
        &self.events.app_id
    }

    /// Emits a happening of the whole cluster decided on this node.
    pub fn emit_cluster(&self, make: impl FnOnce() -> ClusterWide) {
        self.events.stream.cluster(&self.events.app_id, make);
    }

    /// Emits a happening of this node's own connections.
    pub fn emit_node(&self, make: impl FnOnce() -> NodeLocal) {
        self.events.stream.node(&self.events.app_id, make);
    }

    /// A connection of this app opened on this node.
    pub fn connection_opened(&self, conn: &Connection) {
        self.emit_node(|| NodeLocal::ConnectionOpened {
            socket_id: conn.socket_id.clone(),
            wire: conn.wire.variant,
        });
    }

    /// A connection of this app closed on this node.
    pub fn connection_closed(&self, conn: &Connection) {
        self.emit_node(|| NodeLocal::ConnectionClosed {
            socket_id: conn.socket_id.clone(),
            wire: conn.wire.variant,
        });
    }

    /// A client event (`client-*`, a whisper) is being relayed; `event`
    /// excludes its sender.
    pub fn client_event_relayed(&self, event: &Event) {
        let EventKind::Message {
            name,
            data,
            user_id,
        } = &event.kind
        else {
            return;
        };
        let Some(socket_id) = &event.exclude else {
            return;
        };
        self.emit_cluster(|| ClusterWide::ClientEvent {
            channel: event.channel.clone(),
            event: name.clone(),
            data: data.clone(),
            socket_id: socket_id.clone(),
            user_id: user_id.clone(),
        });
    }

    /// A client subscribed to a cache channel that holds no event.
    pub fn cache_missed(&self, channel: &str) {
        self.emit_cluster(|| ClusterWide::CacheMiss {
            channel: channel.into(),
        });
    }

    /// An event entered through the HTTP API on this node.
    pub fn api_event(&self, channels: &[String], event: &str) {
        self.emit_node(|| NodeLocal::ApiEvent {
            channels: channels.iter().map(|c| c.as_str().into()).collect(),
            event: event.into(),
        });
    }

    pub(super) fn subscription_happenings(
        &self,
        socket: &SocketId,
        channel: &str,
        joined: bool,
        count: usize,
    ) {
        let stream = &self.events.stream;
        if !stream.is_observed() {
            return;
        }
        self.emit_node(|| {
            let (socket_id, channel) = (socket.clone(), channel.into());
            if joined {
                NodeLocal::Subscribed { socket_id, channel }
            } else {
                NodeLocal::Unsubscribed { socket_id, channel }
            }
        });
        if self.adapter.counts_cluster_wide() && !channel.starts_with("presence-") {
            self.emit_cluster(|| ClusterWide::SubscriptionCount {
                channel: channel.into(),
                count,
            });
        }
    }

    /// Reports a settled verdict: cluster happenings on this node's stream,
    /// cluster-view changes on the stream and to this node's watchers.
    pub fn report(&self, report: Report) {
        match report {
            Report::Cluster(what) => self.emit_cluster(|| what),
            Report::Seen(seen) => {
                let (online, user) = match &seen {
                    SeenEverywhere::UserOnline { user_id } => (true, user_id.clone()),
                    SeenEverywhere::UserOffline { user_id } => (false, user_id.clone()),
                };
                self.events.stream.seen(&self.events.app_id, || seen);
                self.notify_watchers(online, &user);
            }
        }
    }

    /// The local adapter's "first here is first anywhere" verdict.
    pub fn arrived(&self, subject: Subject) {
        if self
            .events
            .settler
            .lock()
            .arrive(&self.events.app_id, &subject)
        {
            self.report(subject.arrived());
        }
    }

    /// The local adapter's "last here is last anywhere" verdict: held, then
    /// reported by [`Hub::settle_local`] unless it comes back.
    pub fn departed(&self, subject: Subject) {
        let generation = self.events.generation.fetch_add(1, Ordering::Relaxed);
        self.events
            .settler
            .lock()
            .depart(&self.events.app_id, subject.clone(), "", generation);
        if !self.hold(subject.clone(), generation) {
            self.settle_local(subject, generation);
        }
    }

    /// Starts a departure's hold on the node's hold queue; false when there
    /// is none or it is full (settle it now). When the hold ends, the node
    /// calls the adapter's `hold_expired`.
    pub fn hold(&self, subject: Subject, generation: u64) -> bool {
        let Some(holds) = &self.events.holds else {
            return false;
        };
        holds
            .hold((self.events.app_id.clone(), subject, generation))
            .is_ok()
    }

    /// The local adapter's hold ended: reports the departure unless a
    /// come-back cancelled it.
    pub fn settle_local(&self, subject: Subject, generation: u64) {
        let settled =
            self.events
                .settler
                .lock()
                .settle(&self.events.app_id, &subject, "", generation);
        if settled {
            self.report(subject.departed());
        }
    }

    /// Users among `users` with a connection on this node, or whose
    /// departure is still held (settled view: they are still online).
    pub fn local_users_among(&self, users: &[Box<str>]) -> Vec<Box<str>> {
        let connected = self.users.lock();
        let settler = self.events.settler.lock();
        users
            .iter()
            .filter(|u| {
                connected.contains_key(&***u)
                    || settler.is_pending(&self.events.app_id, &Subject::User((*u).clone()))
            })
            .cloned()
            .collect()
    }

    /// Users with at least one connection on this node.
    pub fn local_users(&self) -> Vec<Box<str>> {
        self.users.lock().keys().cloned().collect()
    }

    /// Registers `conn` as watching `users`; returns those online now
    /// (cluster-wide, settled). Later changes reach `conn` through `encode`.
    pub fn watch(
        &self,
        conn: &Arc<Connection>,
        users: &[Box<str>],
        encode: WatchlistEncoder,
    ) -> Vec<Box<str>> {
        {
            let mut watchers = self.events.watchers.lock();
            for user in users {
                let list = watchers.entry(user.clone()).or_default();
                if !list.iter().any(|w| Arc::ptr_eq(&w.conn, conn)) {
                    list.push(Watcher {
                        conn: conn.clone(),
                        encode,
                    });
                }
            }
        }
        self.adapter.users_online(self, users)
    }

    /// Forgets `conn`'s watchlist.
    pub fn unwatch(&self, conn: &Arc<Connection>, users: &[Box<str>]) {
        let mut watchers = self.events.watchers.lock();
        for user in users {
            if let Some(list) = watchers.get_mut(user) {
                list.retain(|w| !Arc::ptr_eq(&w.conn, conn));
                if list.is_empty() {
                    watchers.remove(user);
                }
            }
        }
    }

    fn notify_watchers(&self, online: bool, user: &str) {
        let targets: Vec<(Arc<Connection>, WatchlistEncoder)> =
            match self.events.watchers.lock().get(user) {
                Some(list) => list.iter().map(|w| (w.conn.clone(), w.encode)).collect(),
                None => return,
            };
        for (conn, encode) in targets {
            conn.send(encode(online, &[user]));
        }
    }
}
