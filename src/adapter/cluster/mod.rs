//! The cluster adapter: several nodes sharing a broker behave as one
//! server. The broker is one Redis, a Redis Cluster or NATS
//! ([`crate::adapter::broker`]); everything below holds for each.
//!
//! - **Events** entering a node are delivered to its own subscribers at
//!   once and published once (writes are batched: one round trip per
//!   batch, never per subscriber) on the channel's own broker channel
//!   `{prefix}#ch#{app}#{channel}`, which only nodes with subscribers for
//!   it subscribe to ([`crate::adapter::routes`]; with `routing =
//!   "broadcast"`, on `{prefix}#cluster` to every node); other nodes deliver
//!   them to theirs. A node ignores its own messages, so delivery is exactly
//!   once. Cluster channels contain `#`, which no Pusher channel name may,
//!   so Laravel's ingestion pattern (even `*`) can tell them apart.
//! - **Presence**: each node keeps its own memberships in its share of the
//!   broker's state (a hash `{prefix}#presence#{node}` on Redis) and
//!   announces changes as deltas on the cluster channel; every node folds
//!   them into a [`replica::Replica`] and fires
//!   `member_added`/`member_removed` for its own clients when a user
//!   appears or disappears cluster-wide. A late node reads the shares first.
//! - **Liveness**: nodes heartbeat into the broker (the sorted set
//!   `{prefix}#nodes` on Redis); one silent for `node_timeout` is dropped
//!   from every replica (its users' `member_removed` go out) and its share
//!   deleted by whichever node wins the reap lock.
//! - **Queries** ask the other live nodes over pub/sub and wait at most
//!   `query_timeout`; missing answers are logged, never waited for.
//! - **Outages**: local clients keep being served; the node reconnects with
//!   back-off, rewrites its share of the state, re-announces it, reloads the
//!   others' and reports the difference to its clients. Pub/sub holds no
//!   backlog, so nothing is delivered twice.

mod happenings;
pub mod message;
pub mod replica;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use parking_lot::Mutex;
use tokio::sync::{Notify, mpsc};

use self::happenings::{OCCUPIED, ONLINE, is_pseudo};
use self::message::{EVENT, JOIN, LEAVE, Message, QUERY, RAW, REPLY, SETTLE, TERMINATE};
use self::replica::{Change, Replica};
use crate::adapter::broker::{Broker, BrokerResult, Write, now_ms};
use crate::adapter::routes::RouteTable;
use crate::core::adapter::member_subject;
use crate::core::adapter::{Adapter, BoxFuture};
use crate::core::connection::SocketId;
use crate::core::event::{Event, EventKind, Member, RawJson};
use crate::core::happenings::HOLD;
use crate::core::hub::{ChannelSummary, Hub};
use crate::core::interest::Interest;
use crate::core::node::Node;
use crate::core::settle::{Settler, Subject};

/// Settings of the cluster adapter (the `[cluster]` config table).
#[derive(Debug, Clone)]
pub struct ClusterSettings {
    /// `redis`, `redis-cluster` or `nats`.
    pub broker: String,
    /// The broker's URL (a comma list of seeds for a Redis Cluster).
    pub url: String,
    pub prefix: String,
    pub node_timeout: Duration,
    pub query_timeout: Duration,
    /// Interest-based routing: events travel on a broker channel per Pusher
    /// channel that only interested nodes subscribe to (else every event
    /// goes to every node on `{prefix}#cluster`).
    pub interest_routing: bool,
}

const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// How long a `member_removed` is held back: announcements of different
/// nodes race through the broker (a user opens a tab on one node and closes one
/// on another within milliseconds), so a leave that empties a user waits
/// this long for a join that cancels it — then clients see neither.
const LEAVE_GRACE: Duration = Duration::from_millis(250);

/// (app, channel, user) of a held-back `member_removed`.
type PendingKey = (String, String, String);
const WRITE_QUEUE: usize = 65_536;
/// Channels per SUBSCRIBE/UNSUBSCRIBE command.
const SUBSCRIBE_BATCH: usize = 512;

pub struct ClusterAdapter {
    id: String,
    settings: ClusterSettings,
    broker: Arc<dyn Broker>,
    this: Weak<ClusterAdapter>,
    node: OnceLock<Weak<Node>>,
    writes: mpsc::Sender<Write>,
    write_queue: Mutex<Option<mpsc::Receiver<Write>>>,
    replica: Mutex<Replica>,
    healthy: AtomicBool,
    /// Other live nodes, as of the last heartbeat.
    alive: Mutex<Vec<String>>,
    /// When this node last saw each other node alive (a heartbeat or a
    /// message). A node is dropped only after `node_timeout` unseen, so a
    /// Redis restart (which empties the node set) causes no presence flap.
    last_seen: Mutex<HashMap<String, Instant>>,
    queries: Mutex<HashMap<u64, mpsc::UnboundedSender<Message>>>,
    next_query: AtomicU64,
    /// Held-back removals and the generation that will deliver them.
    pending_removals: Mutex<HashMap<PendingKey, u64>>,
    synced: Notify,
    is_synced: AtomicBool,
    /// Departures being held cluster-wide (see [`happenings`]).
    settler: Mutex<Settler>,
    /// Generations of this node's departures.
    generation: AtomicU64,
    /// Per-channel subscriptions (interest-based routing).
    routes: Arc<RouteTable>,
    /// Messages and payload bytes received from the broker (logged at
    /// shutdown, read by bench/routing.sh).
    received: AtomicU64,
    received_bytes: AtomicU64,
}

impl ClusterAdapter {
    /// The adapter over the broker `settings` name (an error names a URL
    /// the broker cannot use).
    pub fn new(settings: ClusterSettings) -> BrokerResult<Arc<Self>> {
        let (tx, rx) = mpsc::channel(WRITE_QUEUE);
        let id = format!("{:016x}", rand::random::<u64>());
        let broker = crate::adapter::broker::from_settings(
            &settings.broker,
            &settings.url,
            &settings.prefix,
            &id,
        )?;
        Ok(Arc::new_cyclic(|this| ClusterAdapter {
            id,
            settings,
            broker,
            this: this.clone(),
            node: OnceLock::new(),
            writes: tx,
            write_queue: Mutex::new(Some(rx)),
            replica: Mutex::new(Replica::default()),
            healthy: AtomicBool::new(false),
            alive: Mutex::new(Vec::new()),
            last_seen: Mutex::new(HashMap::new()),
            queries: Mutex::new(HashMap::new()),
            next_query: AtomicU64::new(1),
            pending_removals: Mutex::new(HashMap::new()),
            synced: Notify::new(),
            is_synced: AtomicBool::new(false),
            settler: Mutex::new(Settler::default()),
            generation: AtomicU64::new(1),
            routes: RouteTable::new(),
            received: AtomicU64::new(0),
            received_bytes: AtomicU64::new(0),
        }))
    }

    /// The broker (shared with the cluster link of the HTTP fallbacks).
    pub fn broker(&self) -> Arc<dyn Broker> {
        self.broker.clone()
    }

    /// This node's id in the cluster.
    pub fn node_id(&self) -> &str {
        &self.id
    }

    fn key(&self, what: &str) -> String {
        format!("{}#{what}", self.settings.prefix)
    }
    fn cluster_channel(&self) -> String {
        self.key("cluster")
    }
    fn reply_channel(&self, node: &str) -> String {
        self.key(&format!("reply#{node}"))
    }
    /// The broker channel of one Pusher channel's events (interest routing).
    fn route_channel(&self, app: &str, channel: &str) -> String {
        format!("{}#ch#{app}#{channel}", self.settings.prefix)
    }

    /// Channels this node subscribes to on the broker for their events.
    pub fn routed_channels(&self) -> usize {
        self.routes.subscription_count()
    }

    fn hub(&self, app: &str) -> Option<Arc<Hub>> {
        self.node.get()?.upgrade()?.by_id(app)
    }

    /// Delivers an event from the cluster to this node's subscribers only
    /// (never re-published), on its channel's ordered lane, so a big
    /// channel's fan-out does not hold up the messages behind it.
    async fn deliver_local(&self, hub: &Arc<Hub>, event: Event) {
        match self.node.get().and_then(Weak::upgrade) {
            Some(node) => node.deliver_queued(hub, Arc::new(event)).await,
            None => {
                hub.publish(&Arc::new(event));
            }
        }
    }

    /// Announces a presence change to this node's subscribers at once, not
    /// through a lane: the replica already reflects it, so a client that
    /// subscribes while the announcement waited in a lane would get the
    /// member both in its member list and as a `member_added`.
    fn announce(hub: &Arc<Hub>, event: Event) {
        hub.publish(&Arc::new(event));
    }

    /// Spawns a background task tracked by the node (cancelled and awaited
    /// at shutdown); untracked only if the node is already gone.
    fn spawn(&self, task: impl std::future::Future<Output = ()> + Send + 'static) {
        match self.node.get().and_then(Weak::upgrade) {
            Some(node) => node.spawn(task),
            None => drop(tokio::spawn(task)),
        }
    }

    fn send(&self, write: Write) {
        if self.writes.try_send(write).is_err() {
            tracing::warn!("cluster write queue is full; a cluster message was dropped");
        }
    }

    fn broadcast(&self, msg: &Message) {
        match serde_json::to_string(msg) {
            Ok(payload) => self.send(Write::Publish {
                channel: self.cluster_channel(),
                payload: Bytes::from(payload),
            }),
            Err(e) => tracing::warn!(error = %e, "cannot encode a cluster message"),
        }
    }

    /// Delivers presence changes to this node's clients (at once, see
    /// [`ClusterAdapter::announce`]).
    async fn deliver(&self, changes: Vec<Change>) {
        for change in changes {
            let (app, channel, kind) = match change {
                Change::Added {
                    app,
                    channel,
                    member,
                } => (app, channel, EventKind::MemberAdded(member)),
                Change::Removed {
                    app,
                    channel,
                    member,
                } => (app, channel, EventKind::MemberRemoved(member)),
            };
            if is_pseudo(&channel) {
                continue;
            }
            if let Some(hub) = self.hub(&app) {
                Self::announce(&hub, Event::new(channel, kind, None));
            }
        }
    }

    /// Sends queued writes in batches: one round trip per batch.
    async fn writer(self: Arc<Self>, mut queue: mpsc::Receiver<Write>) {
        let mut batch = Vec::with_capacity(256);
        while queue.recv_many(&mut batch, 256).await > 0 {
            for attempt in 0..2 {
                match self.broker.write(&batch).await {
                    Ok(()) => break,
                    Err(e) if attempt == 1 => {
                        tracing::warn!(error = %e, dropped = batch.len(), broker = self.broker.name(), "cluster writes failed; other nodes miss them until the broker is back");
                    }
                    Err(_) => {}
                }
            }
            batch.clear();
        }
    }

    /// Subscribes, resyncs, and applies cluster messages; reconnects with
    /// back-off whenever the subscription ends.
    async fn subscriber(self: Arc<Self>) {
        let mut backoff = Duration::from_millis(200);
        loop {
            match self.subscribe().await {
                Ok(pubsub) => {
                    backoff = Duration::from_millis(200);
                    if let Err(e) = self.resync().await {
                        tracing::warn!(error = %e, "cluster resync failed; retrying");
                    } else {
                        self.healthy.store(true, Ordering::SeqCst);
                        self.is_synced.store(true, Ordering::SeqCst);
                        self.synced.notify_waiters();
                        tracing::info!(node = %self.id, "cluster adapter connected and in sync");
                        if let Err(e) = self.receive(pubsub).await {
                            tracing::warn!(error = %e, "cluster subscription failed");
                        }
                        self.routes.set_online(false);
                        tracing::warn!(
                            "cluster subscription lost; serving local clients, reconnecting"
                        );
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, broker = self.broker.name(), retry_in_ms = backoff.as_millis() as u64, "cannot reach the cluster's broker")
                }
            }
            self.healthy.store(false, Ordering::SeqCst);
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// Applies cluster messages and keeps the per-channel subscriptions in
    /// step with local interest, on one subscription connection (see each
    /// broker for the order it keeps).
    async fn receive(&self, subscriber: crate::adapter::broker::Subscriber) -> BrokerResult<()> {
        let (mut sink, mut messages) = subscriber;
        let route_prefix = format!("{}#ch#", self.settings.prefix);
        let wanted = self.routes.wanted();
        for chunk in wanted.chunks(SUBSCRIBE_BATCH) {
            sink.subscribe(&names(chunk)).await?;
        }
        self.routes.subscribed(&wanted);
        self.routes.set_online(true);
        loop {
            tokio::select! {
                msg = messages.next() => match msg {
                    Some((channel, payload)) => {
                        self.received.fetch_add(1, Ordering::Relaxed);
                        self.received_bytes.fetch_add(payload.len() as u64, Ordering::Relaxed);
                        let route = channel
                            .strip_prefix(route_prefix.as_str())
                            .and_then(|rest| rest.split_once('#'));
                        self.on_message(&payload, route).await;
                    }
                    None => return Ok(()),
                },
                () = self.routes.work() => {
                    let plan = self.routes.plan();
                    for chunk in plan.unsubscribe.chunks(SUBSCRIBE_BATCH) {
                        sink.unsubscribe(&names(chunk)).await?;
                    }
                    for chunk in plan.subscribe.chunks(SUBSCRIBE_BATCH) {
                        sink.subscribe(&names(chunk)).await?;
                        self.routes.subscribed(chunk);
                    }
                }
            }
        }
    }

    async fn subscribe(&self) -> BrokerResult<crate::adapter::broker::Subscriber> {
        self.broker
            .subscriber(vec![self.cluster_channel(), self.reply_channel(&self.id)])
            .await
    }

    /// After (re)connecting: rewrite and re-announce this node's share of
    /// presence, then load every live node's share and report differences.
    async fn resync(&self) -> BrokerResult<()> {
        let local = self.local_presence();
        let mut entries = Vec::with_capacity(local.len());
        let mut announce = Vec::with_capacity(local.len());
        for (app, channel, member) in &local {
            entries.push((
                message::presence_field(app, channel, &member.key),
                message::stored_member(member),
            ));
            let msg = join_message(&self.id, app, channel, member, None);
            if let Ok(payload) = serde_json::to_string(&msg) {
                announce.push(Write::Publish {
                    channel: self.cluster_channel(),
                    payload: Bytes::from(payload),
                });
            }
        }
        // The broker registers the node only once its share is complete: a
        // node in the set must never be read with half its members.
        self.broker
            .rewrite_share(entries, announce, now_ms())
            .await?;

        let cutoff = now_ms().saturating_sub(self.settings.node_timeout.as_millis() as u64);
        let (alive, _) = self.broker.nodes(cutoff).await?;
        let mut changes = Vec::new();
        let known: HashSet<String> = alive.iter().cloned().collect();
        for node in &alive {
            let entries: Vec<(String, String, Member)> = if *node == self.id {
                local.clone()
            } else {
                let share = self.broker.share_of(node).await?;
                share
                    .iter()
                    .filter_map(|(field, value)| {
                        let (app, channel, _) = message::split_presence_field(field)?;
                        Some((
                            app.to_string(),
                            channel.to_string(),
                            message::parse_stored_member(value)?,
                        ))
                    })
                    .collect()
            };
            changes.extend(self.replica.lock().replace_node(node, entries));
        }
        // Nodes not (yet) back in the set get a fresh grace period; the
        // heartbeat drops them if they stay silent.
        let now = Instant::now();
        {
            let mut seen = self.last_seen.lock();
            for node in self.replica_nodes().into_iter().chain(known) {
                seen.insert(node, now);
            }
        }
        *self.alive.lock() = alive.into_iter().filter(|n| *n != self.id).collect();
        self.seen_changes(&changes);
        self.deliver(changes).await;
        Ok(())
    }

    fn replica_nodes(&self) -> Vec<String> {
        // Nodes are few; collecting them from the deltas' origins is cheap
        // enough at heartbeat frequency.
        let replica = self.replica.lock();
        let mut nodes = HashSet::new();
        replica.for_each_node(|n| {
            nodes.insert(n.to_string());
        });
        nodes.into_iter().collect()
    }

    /// Every presence membership on this node as (app, channel, member).
    fn local_presence(&self) -> Vec<(String, String, Member)> {
        let Some(node) = self.node.get().and_then(Weak::upgrade) else {
            return Vec::new();
        };
        node.hubs()
            .iter()
            .flat_map(|hub| {
                hub.local_presence()
                    .into_iter()
                    .map(|(channel, member)| (hub.app.id.clone(), channel, member))
                    .chain(Self::local_pseudo(hub))
            })
            .collect()
    }

    /// Heartbeats and reaps nodes that stopped heartbeating.
    async fn heartbeat(self: Arc<Self>) {
        let period = (self.settings.node_timeout / 3).max(Duration::from_millis(500));
        let mut tick = tokio::time::interval(period);
        loop {
            tick.tick().await;
            if let Err(e) = self.beat().await {
                tracing::debug!(error = %e, "cluster heartbeat failed");
            }
        }
    }

    async fn beat(&self) -> BrokerResult<()> {
        let now = now_ms();
        if !self.healthy.load(Ordering::SeqCst) {
            // Out of sync (the broker away or just back): judge nobody until the
            // subscriber has resynced and restarted everyone's grace period.
            return Ok(());
        }
        let added = self.broker.beat(now).await?;
        if added && self.is_synced.load(Ordering::SeqCst) {
            // Another node reaped us (we were silent too long): come back.
            tracing::warn!(
                "this node had been declared dead by the cluster; re-announcing its state"
            );
            self.resync().await?;
        }
        let cutoff = now.saturating_sub(self.settings.node_timeout.as_millis() as u64);
        let (alive, dead) = self.broker.nodes(cutoff).await?;
        let alive_set: HashSet<&String> = alive.iter().collect();
        {
            let mut seen = self.last_seen.lock();
            let at = Instant::now();
            for node in alive.iter().filter(|n| **n != self.id) {
                seen.insert(node.clone(), at);
            }
        }
        let replica_nodes: HashSet<String> = self.replica_nodes().into_iter().collect();
        let owners: Vec<String> = self
            .settler
            .lock()
            .owners()
            .into_iter()
            .map(String::from)
            .collect();
        // A node is dead once it is not alive in the broker's node set (a
        // stale heartbeat, or not registered at all) and this node has not
        // seen it for node_timeout either: after a broker restart the nodes
        // come back one by one, and a node's first heartbeat may carry the
        // time its (re)registration started, not when it landed; the resync
        // restarted everyone's grace period.
        let unseen = |n: &String| {
            self.last_seen
                .lock()
                .get(n)
                .is_none_or(|at| at.elapsed() >= self.settings.node_timeout)
        };
        let mut gone: Vec<String> = dead
            .iter()
            .cloned()
            .chain(replica_nodes.iter().cloned())
            .chain(owners)
            .filter(|n| *n != self.id && !alive_set.contains(n) && unseen(n))
            .collect();
        gone.sort();
        gone.dedup();
        for node in gone {
            // Whoever wins the reap lock deletes the node's share and
            // reports, once for the cluster, what its users owe.
            let won = self.broker.reap(&node).await?;
            if replica_nodes.contains(&node) {
                tracing::warn!(
                    node,
                    "cluster node stopped heartbeating; removing its presence members"
                );
            }
            let changes = self.replica.lock().drop_node(&node);
            self.settle_gone(&node, &changes, won);
            self.seen_changes(&changes);
            self.deliver(changes).await;
        }
        // Holds whose end was lost (a broker outage) must not swallow a
        // later arrival.
        self.settler.lock().forget_stale(HOLD * 20);
        *self.alive.lock() = alive.into_iter().filter(|n| *n != self.id).collect();
        Ok(())
    }

    /// Applies one cluster message. Events, raw frames and presence
    /// announcements go to this node's clients through the channel's lane
    /// (in order with each other); replica bookkeeping, terminations and
    /// queries stay inline — they are cheap, and the replica must follow
    /// the message stream's order exactly.
    /// `route` is (app, channel) of an event that came on its channel's
    /// own broker channel, which names them (its payload leaves them out).
    async fn on_message(&self, payload: &[u8], route: Option<(&str, &str)>) {
        let mut msg: Message = match serde_json::from_slice(payload) {
            Ok(m) => m,
            Err(e) => return tracing::warn!(error = %e, "undecodable cluster message"),
        };
        if let Some((app, channel)) = route
            && msg.a.is_empty()
        {
            msg.a = app.to_string();
            msg.c = Some(channel.to_string());
        }
        let mine = msg.o == self.id;
        if !mine {
            self.last_seen.lock().insert(msg.o.clone(), Instant::now());
        }
        match msg.t.as_str() {
            EVENT if !mine => {
                let (Some(hub), Some(channel), Some(name), Some(data)) =
                    (self.hub(&msg.a), msg.c, msg.n, msg.d)
                else {
                    return;
                };
                let event = Event::new(
                    channel,
                    EventKind::Message {
                        name: name.into(),
                        data: RawJson::from_validated(data.get()),
                        user_id: msg.u.map(Into::into),
                    },
                    msg.x.map(|x| SocketId::from_raw(&x)),
                );
                let event = event.also_excluding(msg.xs.iter().map(|x| SocketId::from_raw(x)));
                self.deliver_local(&hub, event).await;
            }
            RAW if !mine => {
                use base64::Engine;
                let (Some(hub), Some(channel), Some(payload)) = (self.hub(&msg.a), msg.c, msg.p)
                else {
                    return;
                };
                let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(payload) else {
                    return;
                };
                let kind = EventKind::Raw {
                    payload: bytes.into(),
                    binary: msg.b,
                };
                let event = Event::new(channel, kind, msg.x.map(|x| SocketId::from_raw(&x)))
                    .also_excluding(msg.xs.iter().map(|x| SocketId::from_raw(x)));
                self.deliver_local(&hub, event).await;
            }
            JOIN => {
                let (Some(channel), Some(member)) = (msg.c.as_deref(), message::member_of(&msg))
                else {
                    return;
                };
                let added = self
                    .replica
                    .lock()
                    .join(&msg.a, channel, &msg.o, member.clone());
                if is_pseudo(channel) {
                    return self.on_pseudo(&msg, channel, &member.key, added);
                }
                if added && let Some(hub) = self.hub(&msg.a) {
                    let subject = member_subject(channel, &member);
                    self.arrived(&hub, subject, msg.o == self.id);
                }
                let key = (msg.a.clone(), channel.to_string(), member.key.to_string());
                // Back within the grace period: clients never saw it leave.
                let returned = added && self.pending_removals.lock().remove(&key).is_some();
                if added
                    && !returned
                    && let Some(hub) = self.hub(&msg.a)
                {
                    let joiner = msg.x.map(|x| SocketId::from_raw(&x));
                    let event = Event::new(channel, EventKind::MemberAdded(member), joiner);
                    Self::announce(&hub, event);
                }
            }
            LEAVE => {
                let (Some(channel), Some(user)) = (msg.c.as_deref(), msg.u.as_deref()) else {
                    return;
                };
                let removed = self.replica.lock().leave(&msg.a, channel, &msg.o, user);
                if is_pseudo(channel) {
                    return self.on_pseudo(&msg, channel, user, removed.is_some());
                }
                if let Some(member) = removed {
                    if let Some(hub) = self.hub(&msg.a) {
                        self.departed(&hub, member_subject(channel, &member), &msg);
                    }
                    self.remove_after_grace(msg.a.clone(), channel.to_string(), member);
                }
            }
            TERMINATE if !mine => {
                if let (Some(hub), Some(user)) = (self.hub(&msg.a), msg.u.as_deref()) {
                    hub.terminate_user(user);
                }
            }
            QUERY if !mine => {
                let Some(hub) = self.hub(&msg.a) else { return };
                let counts = hub
                    .channels(msg.c.as_deref())
                    .into_iter()
                    .map(|c| (c.name, c.subscription_count))
                    .collect();
                let reply = Message {
                    t: REPLY.into(),
                    o: self.id.clone(),
                    q: msg.q,
                    s: Some(counts),
                    ..Message::default()
                };
                if let Ok(payload) = serde_json::to_string(&reply) {
                    self.send(Write::Publish {
                        channel: self.reply_channel(&msg.o),
                        payload: Bytes::from(payload),
                    });
                }
            }
            SETTLE => self.on_settle(&msg),
            REPLY => {
                let sender = msg.q.and_then(|q| self.queries.lock().get(&q).cloned());
                if let Some(sender) = sender {
                    let _ = sender.send(msg);
                }
            }
            _ => {}
        }
    }
}

impl ClusterAdapter {
    /// Delivers `member_removed` after [`LEAVE_GRACE`] unless a join of the
    /// same user cancels it meanwhile.
    fn remove_after_grace(&self, app: String, channel: String, member: Member) {
        let Some(this) = self.this.upgrade() else {
            return;
        };
        let key = (app, channel, member.key.to_string());
        let generation = self.next_query.fetch_add(1, Ordering::Relaxed);
        self.pending_removals.lock().insert(key.clone(), generation);
        self.spawn(async move {
            tokio::time::sleep(LEAVE_GRACE).await;
            let due = {
                let mut pending = this.pending_removals.lock();
                let due = pending.get(&key) == Some(&generation);
                if due {
                    pending.remove(&key);
                }
                due
            };
            if due && let Some(hub) = this.hub(&key.0) {
                let event = Event::new(key.1.as_str(), EventKind::MemberRemoved(member), None);
                Self::announce(&hub, event);
            }
        });
    }
}

/// Channel names as subscription arguments.
fn names(keys: &[Box<str>]) -> Vec<&str> {
    keys.iter().map(|k| &**k).collect()
}

fn join_message(
    node: &str,
    app: &str,
    channel: &str,
    member: &Member,
    socket: Option<&SocketId>,
) -> Message {
    Message {
        t: JOIN.into(),
        o: node.into(),
        a: app.into(),
        c: Some(channel.into()),
        i: message::raw(&member.id),
        f: member.info.as_ref().and_then(message::raw),
        x: socket.map(|s| s.as_str().to_string()),
        ..Message::default()
    }
}

impl Adapter for ClusterAdapter {
    fn name(&self) -> &'static str {
        self.broker.name()
    }

    fn attach(&self, node: Weak<Node>) {
        let _ = self.node.set(node);
        let (Some(this), Some(queue)) = (self.this.upgrade(), self.write_queue.lock().take())
        else {
            return;
        };
        // Tracked by the node: cancelled and awaited at shutdown, after
        // `shutdown` below has flushed the write queue.
        self.spawn(this.clone().writer(queue));
        self.spawn(this.clone().subscriber());
        self.spawn(this.heartbeat());
    }

    fn ready(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let wait = self.synced.notified();
            if self.is_synced.load(Ordering::SeqCst) {
                return;
            }
            if tokio::time::timeout(Duration::from_secs(5), wait)
                .await
                .is_err()
            {
                tracing::warn!(
                    "cluster broker not reachable at start; serving local clients meanwhile"
                );
            }
        })
    }

    fn publish(&self, hub: &Arc<Hub>, event: Arc<Event>) {
        hub.publish(&event);
        let base = Message {
            o: self.id.clone(),
            a: hub.app.id.clone(),
            c: Some(event.channel.to_string()),
            x: event.exclude.as_ref().map(|s| s.as_str().to_string()),
            xs: event
                .also_excluded()
                .iter()
                .map(|s| s.as_str().to_string())
                .collect(),
            ..Message::default()
        };
        match &event.kind {
            EventKind::Message {
                name,
                data,
                user_id,
            } => {
                let msg = Message {
                    t: EVENT.into(),
                    n: Some(name.to_string()),
                    d: message::raw(data),
                    u: user_id.as_ref().map(|u| u.to_string()),
                    ..base
                };
                if !self.settings.interest_routing {
                    return self.broadcast(&msg);
                }
                // The broker channel names the app and the channel (unless
                // the app id has a '#', which would make that ambiguous).
                let msg = if hub.app.id.contains('#') {
                    msg
                } else {
                    Message {
                        a: String::new(),
                        c: None,
                        ..msg
                    }
                };
                match serde_json::to_string(&msg) {
                    Ok(payload) => self.send(Write::Publish {
                        channel: self.route_channel(&hub.app.id, &event.channel),
                        payload: Bytes::from(payload),
                    }),
                    Err(e) => tracing::warn!(error = %e, "cannot encode a cluster message"),
                }
            }
            EventKind::Raw { payload, binary } => {
                use base64::Engine;
                self.broadcast(&Message {
                    t: RAW.into(),
                    p: Some(base64::engine::general_purpose::STANDARD.encode(payload)),
                    b: *binary,
                    ..base
                });
            }
            // Presence and counts are derived on every node, never sent.
            _ => {}
        }
    }

    fn member_joining(&self, hub: &Hub, channel: &str, member: &Member, socket: &SocketId) -> bool {
        if !self.healthy.load(Ordering::SeqCst) {
            return false;
        }
        let app = &hub.app.id;
        self.send(Write::SetMember {
            field: message::presence_field(app, channel, &member.key),
            value: message::stored_member(member),
        });
        self.broadcast(&join_message(&self.id, app, channel, member, Some(socket)));
        true
    }

    /// Only when the broker was away at join time (see `member_joining`).
    fn member_joined(&self, hub: &Hub, channel: &str, member: &Member, socket: &SocketId) {
        let app = &hub.app.id;
        self.send(Write::SetMember {
            field: message::presence_field(app, channel, &member.key),
            value: message::stored_member(member),
        });
        if self
            .replica
            .lock()
            .join(app, channel, &self.id, member.clone())
        {
            // The broker is away: tell local clients now; the resync re-announces.
            hub.announce_member_added(channel, member.clone(), Some(socket.clone()));
            self.arrived(hub, member_subject(channel, member), true);
        }
    }

    fn member_left(&self, hub: &Hub, channel: &str, member: &Member) {
        let app = &hub.app.id;
        self.send(Write::DelMember {
            field: message::presence_field(app, channel, &member.key),
        });
        if self.healthy.load(Ordering::SeqCst) {
            self.broadcast(&self.leave_message(app, channel, &member.key));
        } else if let Some(gone) = self
            .replica
            .lock()
            .leave(app, channel, &self.id, &member.key)
        {
            hub.announce_member_removed(channel, gone);
            hub.report(member_subject(channel, member).departed());
        }
    }

    fn channel_occupied(&self, hub: &Hub, channel: &str) {
        self.pseudo_join(hub, OCCUPIED, channel);
    }

    fn channel_vacated(&self, hub: &Hub, channel: &str) {
        self.pseudo_leave(hub, OCCUPIED, channel);
    }

    fn user_connected(&self, hub: &Hub, user: &str) {
        self.pseudo_join(hub, ONLINE, user);
    }

    fn user_disconnected(&self, hub: &Hub, user: &str) {
        self.pseudo_leave(hub, ONLINE, user);
    }

    fn hold_expired(&self, hub: &Hub, subject: Subject, generation: u64) {
        if self.healthy.load(Ordering::SeqCst) {
            self.end_hold(hub, subject, generation);
        } else {
            // The broker is away: settle here (the other nodes forget theirs).
            let settled = self
                .settler
                .lock()
                .settle(hub.app_id(), &subject, &self.id, generation);
            if settled {
                hub.report(subject.departed());
            }
        }
    }

    fn users_online(&self, hub: &Hub, users: &[Box<str>]) -> Vec<Box<str>> {
        self.online_among(hub, users)
    }

    fn counts_cluster_wide(&self) -> bool {
        false
    }

    fn remote_members(&self, hub: &Hub, channel: &str) -> Vec<Member> {
        self.replica.lock().members(&hub.app.id, channel)
    }

    fn channels(
        &self,
        hub: Arc<Hub>,
        prefix: Option<String>,
    ) -> BoxFuture<'static, Vec<ChannelSummary>> {
        let this = self.this.upgrade();
        Box::pin(async move {
            let local = hub.channels(prefix.as_deref());
            let Some(this) = this else { return local };
            let mut counts: HashMap<String, usize> = local
                .into_iter()
                .map(|c| (c.name, c.subscription_count))
                .collect();
            let expected: HashSet<String> = this.alive.lock().iter().cloned().collect();
            if this.healthy.load(Ordering::SeqCst) && !expected.is_empty() {
                let id = this.next_query.fetch_add(1, Ordering::Relaxed);
                let (tx, mut rx) = mpsc::unbounded_channel();
                this.queries.lock().insert(id, tx);
                this.broadcast(&Message {
                    t: QUERY.into(),
                    o: this.id.clone(),
                    a: hub.app.id.clone(),
                    c: prefix.clone(),
                    q: Some(id),
                    ..Message::default()
                });
                let deadline = Instant::now() + this.settings.query_timeout;
                let mut answered = HashSet::new();
                while answered.len() < expected.len() {
                    match tokio::time::timeout_at(deadline.into(), rx.recv()).await {
                        Ok(Some(reply)) => {
                            for (name, n) in reply.s.unwrap_or_default() {
                                *counts.entry(name).or_default() += n;
                            }
                            answered.insert(reply.o);
                        }
                        _ => break,
                    }
                }
                this.queries.lock().remove(&id);
                let missing: Vec<&String> =
                    expected.iter().filter(|n| !answered.contains(*n)).collect();
                if !missing.is_empty() {
                    tracing::warn!(
                        ?missing,
                        "cluster query: some nodes did not answer in time; counts are partial"
                    );
                }
            }
            let mut out: Vec<ChannelSummary> = counts
                .into_iter()
                .filter(|(_, n)| *n > 0)
                .map(|(name, subscription_count)| {
                    let user_count = name
                        .starts_with("presence-")
                        .then(|| hub.members(&name).len());
                    ChannelSummary {
                        name,
                        subscription_count,
                        user_count,
                    }
                })
                .collect();
            out.sort_by(|a, b| a.name.cmp(&b.name));
            out
        })
    }

    fn terminate_user(&self, hub: &Arc<Hub>, user: &str) {
        hub.terminate_user(user);
        self.broadcast(&Message {
            t: TERMINATE.into(),
            o: self.id.clone(),
            a: hub.app.id.clone(),
            u: Some(user.into()),
            ..Message::default()
        });
    }

    fn healthy(&self) -> bool {
        self.healthy.load(Ordering::SeqCst)
    }

    fn nodes(&self) -> Vec<crate::core::adapter::NodeSeen> {
        use crate::core::adapter::NodeSeen;
        let alive = self.alive.lock().clone();
        let mut nodes = vec![NodeSeen {
            id: self.id.clone(),
            this: true,
            alive: self.healthy(),
            last_seen_ms: None,
        }];
        nodes.extend(
            self.last_seen
                .lock()
                .iter()
                .filter(|(id, _)| **id != self.id)
                .map(|(id, at)| NodeSeen {
                    id: id.clone(),
                    this: false,
                    alive: alive.contains(id),
                    last_seen_ms: Some(at.elapsed().as_millis() as u64),
                }),
        );
        nodes.extend(
            alive
                .iter()
                .filter(|id| !nodes.iter().any(|n| &n.id == *id))
                .map(|id| NodeSeen {
                    id: id.clone(),
                    this: false,
                    alive: true,
                    last_seen_ms: None,
                })
                .collect::<Vec<_>>(),
        );
        nodes.sort_by(|a, b| b.this.cmp(&a.this).then_with(|| a.id.cmp(&b.id)));
        nodes
    }

    fn channel_interest(&self, app: &str, channel: &str) -> Interest {
        if !self.settings.interest_routing {
            return Interest::always();
        }
        self.routes.hold(self.route_channel(app, channel))
    }

    fn shutdown(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            // Let queued leaves go out, then leave the cluster cleanly.
            let deadline = Instant::now() + Duration::from_secs(2);
            while self.writes.capacity() < WRITE_QUEUE && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            tracing::info!(
                messages = self.received.load(Ordering::Relaxed),
                bytes = self.received_bytes.load(Ordering::Relaxed),
                routed_channels = self.routes.subscription_count(),
                broker = self.broker.name(),
                "cluster traffic received from the broker"
            );
            if let Err(e) = self.broker.leave().await {
                tracing::debug!(error = %e, "could not leave the cluster cleanly");
            }
        })
    }
}
