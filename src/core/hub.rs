//! The hub of one app on this node: who is subscribed to what, presence
//! members, signed-in users, cached events, and the local fan-out.
//!
//! Locking is designed around the fan-out. Channels live in shards (a read
//! lock finds one); each channel keeps its subscribers in an `Arc<Vec<_>>`
//! that a publish clones under the channel's mutex and then walks with no
//! lock held, so a subscribe never waits for a long fan-out and a fan-out
//! never waits for more than one short critical section. Subscribes copy the
//! list only when a fan-out is walking it at that moment (`Arc::make_mut`).

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};

use super::adapter::Adapter;
use super::app::AppConfig;
use super::channel::ChannelSpec;
use super::connection::{Connection, Frame, SocketId};
use super::event::{Event, EventKind, Member};
use super::happenings::Happenings;
use super::interest::Interest;
use super::live_app::LiveApp;
use super::roster::{Roster, Tracked};
use super::settle::HoldQueue;
use super::stats::AppStats;

/// How long a cache channel keeps its last event (Pusher: at most 30 min).
pub const CACHE_TTL: Duration = Duration::from_secs(30 * 60);

const SHARDS: usize = 16;

type ChannelMap = HashMap<Box<str>, Arc<Channel>>;
/// Cache channels' last events, with when they were stored.
type CacheMap = HashMap<Box<str>, (Arc<Event>, Instant)>;

#[derive(Default)]
struct Channel {
    state: Mutex<ChannelState>,
}

#[derive(Default)]
struct ChannelState {
    subscribers: Arc<Vec<Arc<Connection>>>,
    /// Presence members by user key, with how many connections each has here.
    members: HashMap<Box<str>, (Member, u32)>,
    /// Set, under this lock, when the channel is removed from its shard. A
    /// subscribe finds the channel under the shard lock but locks it only
    /// after releasing that: if the last subscriber left in between, joining
    /// this orphan would confirm a subscription nobody publishes to (and
    /// leave a ghost presence member), so the subscribe starts over.
    dead: bool,
    /// This node's claim on the channel's cluster events, from the first
    /// local subscriber to the last (interest-based routing).
    interest: Interest,
}

/// Why a subscription was refused by the hub (auth is checked before).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JoinError {
    /// The presence channel already has `max_presence_members` users.
    PresenceFull(usize),
}

/// What a new subscriber learns, handed to the caller while the channel is
/// locked so that its confirmation is queued before any later broadcast.
pub struct Joined<'a> {
    /// Presence channels: every member, deduplicated by user.
    pub members: Option<Vec<&'a Member>>,
    pub subscription_count: usize,
}

/// A channel as the HTTP API reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelSummary {
    pub name: String,
    pub subscription_count: usize,
    /// Distinct users (presence channels only).
    pub user_count: Option<usize>,
}

/// One connection's place in its app's quota (see [`Hub::try_connect`]);
/// dropping it releases the place.
#[must_use = "the connection slot is released as soon as this is dropped"]
pub struct ConnectionSlot {
    hub: Arc<Hub>,
}

impl ConnectionSlot {
    pub fn hub(&self) -> &Arc<Hub> {
        &self.hub
    }
}

impl std::fmt::Debug for ConnectionSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionSlot")
            .field("app", &self.hub.app.id)
            .finish()
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.hub.connections.fetch_sub(1, Ordering::AcqRel);
        self.hub.stats.disconnected();
    }
}

/// One app's state on this node.
pub struct Hub {
    /// The app's current settings (replaced by a reload, see [`LiveApp`]).
    pub app: LiveApp,
    /// Every open connection of the app here (see [`Hub::track`]).
    pub roster: Roster,
    pub stats: AppStats,
    shards: Box<[RwLock<ChannelMap>]>,
    hasher: std::collections::hash_map::RandomState,
    users: Mutex<HashMap<Box<str>, Vec<Arc<Connection>>>>,
    cache: Mutex<CacheMap>,
    connections: AtomicU64,
    adapter: Arc<dyn Adapter>,
    /// What happens here, for webhooks, the watchlist and the dashboard
    /// (see [`super::happenings`]).
    events: happenings::HubHappenings,
}

impl Hub {
    pub fn new(app: AppConfig, adapter: Arc<dyn Adapter>) -> Self {
        Self::with_happenings(app, adapter, Happenings::new(), None)
    }

    /// A hub that emits into the node's `stream` and holds departures in
    /// the node's `holds` queue (without one, departures settle at once).
    pub fn with_happenings(
        app: AppConfig,
        adapter: Arc<dyn Adapter>,
        stream: Happenings,
        holds: Option<HoldQueue>,
    ) -> Self {
        Hub {
            events: happenings::HubHappenings::new(app.id.as_str().into(), stream, holds),
            adapter,
            app: LiveApp::new(app),
            roster: Roster::default(),
            stats: AppStats::default(),
            shards: (0..SHARDS)
                .map(|_| RwLock::new(ChannelMap::new()))
                .collect(),
            hasher: Default::default(),
            users: Mutex::new(HashMap::new()),
            cache: Mutex::new(HashMap::new()),
            connections: AtomicU64::new(0),
        }
    }

    fn shard(&self, channel: &str) -> &RwLock<ChannelMap> {
        &self.shards[(self.hasher.hash_one(channel) as usize) % SHARDS]
    }

    /// Counts a new connection against the app's quota. The slot is given
    /// back when the returned guard drops — on every path, a panicking
    /// session included — so no front-end pairs the two by hand.
    pub fn try_connect(self: &Arc<Self>) -> Option<ConnectionSlot> {
        let max = self.app.max_connections;
        let before = self.connections.fetch_add(1, Ordering::AcqRel);
        if max > 0 && before >= max {
            self.connections.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        self.stats.connected();
        Some(ConnectionSlot { hub: self.clone() })
    }

    /// Puts `conn` on the app's roster until the returned guard drops, so
    /// that deleting or disabling the app closes it (front-ends call this
    /// right after creating the connection).
    pub fn track(self: &Arc<Self>, conn: &Arc<Connection>) -> Tracked {
        Tracked::new(self.clone(), conn)
    }

    pub fn connection_count(&self) -> u64 {
        self.connections.load(Ordering::Acquire)
    }

    /// Adds `conn` to `spec`'s channel; `member` is required on presence
    /// channels. `confirm` runs under the channel lock (queue the success
    /// frame there). Broadcasts `member_added` when this is the user's first
    /// connection, and the subscription count when the app wants it.
    pub fn subscribe(
        &self,
        conn: &Arc<Connection>,
        spec: &ChannelSpec<'_>,
        member: Option<Member>,
        confirm: impl FnOnce(Joined<'_>),
    ) -> Result<(), JoinError> {
        let remote = if spec.is_presence() {
            self.adapter.remote_members(self, spec.name)
        } else {
            Vec::new()
        };
        let mut member = member;
        // Each retry means another thread removed the channel between our
        // lookup and our lock; the next lookup creates a live one under the
        // shard lock, so only a continuous flood of removals repeats it.
        let (added, announced, count) = loop {
            let channel = {
                let mut shard = self.shard(spec.name).write();
                shard
                    .entry(spec.name.into())
                    .or_insert_with(|| self.new_channel(spec.name))
                    .clone()
            };
            let mut state = channel.state.lock();
            if state.dead {
                continue;
            }
            let mut added = None;
            if let Some(member) = member.take() {
                let known = state.members.contains_key(&member.key);
                if !known && state.members.len() >= self.app.max_presence_members {
                    drop(state);
                    self.drop_if_empty(spec.name);
                    return Err(JoinError::PresenceFull(self.app.max_presence_members));
                }
                let entry = state
                    .members
                    .entry(member.key.clone())
                    .or_insert_with(|| (member, 0));
                entry.1 += 1;
                if entry.1 == 1 {
                    added = Some(entry.0.clone());
                }
            }
            // Announce a new member to the cluster before the joiner hears
            // it is in: anything the client does next (closing another tab
            // on another node) then reaches the other nodes after this.
            let announced = added.as_ref().is_some_and(|m| {
                self.adapter
                    .member_joining(self, spec.name, m, &conn.socket_id)
            });
            let first_here = state.subscribers.is_empty();
            Arc::make_mut(&mut state.subscribers).push(conn.clone());
            // Internal channels (`#...`: a route's control channel) are
            // nobody's happening: no webhook hears of them.
            if first_here && !spec.name.starts_with('#') {
                // Under the lock, so this node's occupied/vacated verdicts
                // for the channel reach the adapter in their real order.
                self.adapter.channel_occupied(self, spec.name);
            }
            let count = state.subscribers.len();
            let members = spec.is_presence().then(|| {
                let mut all: Vec<&Member> = state.members.values().map(|(m, _)| m).collect();
                all.extend(
                    remote
                        .iter()
                        .filter(|m| !state.members.contains_key(&m.key)),
                );
                all
            });
            confirm(Joined {
                members,
                subscription_count: count,
            });
            break (added, announced, count);
        };
        self.stats.subscribed();
        self.subscription_happenings(&conn.socket_id, spec.name, true, count);
        if let Some(member) = added
            && !announced
        {
            self.adapter
                .member_joined(self, spec.name, &member, &conn.socket_id);
        }
        if self.app.subscription_count_events && !spec.is_presence() {
            self.publish_count(spec.name, count);
        }
        Ok(())
    }

    /// Removes `conn` from `channel`. `member_key` is the user it joined a
    /// presence channel as; `member_removed` goes out when that was the
    /// user's last connection. Returns false if it was not subscribed.
    pub fn unsubscribe(
        &self,
        conn: &Arc<Connection>,
        channel: &str,
        member_key: Option<&str>,
    ) -> bool {
        let mut removed_member = None;
        let mut released = None;
        let count;
        {
            let mut shard = self.shard(channel).write();
            let Some(ch) = shard.get(channel) else {
                return false;
            };
            let mut state = ch.state.lock();
            let Some(pos) = state.subscribers.iter().position(|c| Arc::ptr_eq(c, conn)) else {
                return false;
            };
            Arc::make_mut(&mut state.subscribers).swap_remove(pos);
            if let Some(key) = member_key
                && let Some(entry) = state.members.get_mut(key)
            {
                entry.1 -= 1;
                if entry.1 == 0 {
                    removed_member = state.members.remove(key).map(|(m, _)| m);
                }
            }
            count = state.subscribers.len();
            if count == 0 {
                if !channel.starts_with('#') {
                    self.adapter.channel_vacated(self, channel);
                }
                state.dead = true;
                released = Some(std::mem::take(&mut state.interest));
                drop(state);
                shard.remove(channel);
            }
        }
        drop(released);
        self.stats.unsubscribed();
        self.subscription_happenings(&conn.socket_id, channel, false, count);
        if let Some(member) = removed_member {
            self.adapter.member_left(self, channel, &member);
        }
        if count > 0 && self.app.subscription_count_events && !channel.starts_with("presence-") {
            self.publish_count(channel, count);
        }
        true
    }

    fn drop_if_empty(&self, channel: &str) {
        let mut shard = self.shard(channel).write();
        let Some(ch) = shard.get(channel) else { return };
        let mut state = ch.state.lock();
        if state.subscribers.is_empty() {
            state.dead = true; // see ChannelState::dead
            let released = std::mem::take(&mut state.interest);
            drop(state);
            shard.remove(channel);
            drop(shard);
            drop(released);
        }
    }

    /// A channel's first local subscriber is arriving: claim its events.
    fn new_channel(&self, name: &str) -> Arc<Channel> {
        let state = ChannelState {
            interest: self.adapter.channel_interest(&self.app.id, name),
            ..ChannelState::default()
        };
        Arc::new(Channel {
            state: Mutex::new(state),
        })
    }

    /// A claim on `channel`'s cluster events for a subscription about to be
    /// confirmed: confirm once it [`Interest::is_routed`] (or after waiting
    /// for [`Interest::routed`]), and drop it after [`Hub::subscribe`].
    pub fn interest(&self, channel: &str) -> Interest {
        self.adapter.channel_interest(&self.app.id, channel)
    }

    fn publish_count(&self, channel: &str, count: usize) {
        let event = Event::new(channel, EventKind::SubscriptionCount(count), None);
        self.publish(&Arc::new(event));
    }

    /// Delivers `event` to this node's subscribers of its channel (skipping
    /// the excluded socket) and returns how many got it. Application events
    /// on cache channels are kept for replay.
    pub fn publish(&self, event: &Arc<Event>) -> usize {
        if matches!(event.kind, EventKind::Message { .. })
            && ChannelSpec::parse(&event.channel).is_ok_and(|s| s.cached)
        {
            self.cache
                .lock()
                .insert(event.channel.clone(), (event.clone(), Instant::now()));
        }
        let channel = self
            .shard(&event.channel)
            .read()
            .get(&*event.channel)
            .cloned();
        let Some(channel) = channel else { return 0 };
        let subscribers = channel.state.lock().subscribers.clone();
        let mut delivered = 0;
        let mut bytes = 0;
        let binary = event.is_binary();
        for conn in subscribers.iter() {
            if event.excludes(&conn.socket_id) {
                continue;
            }
            let data = event.encoded(conn.wire);
            if data.is_empty() {
                continue; // this wire does not carry this kind of event
            }
            bytes += data.len();
            if conn.send(Frame { data, binary }) {
                delivered += 1;
            }
        }
        self.stats.delivered(delivered, bytes);
        delivered
    }

    /// Tells this node's subscribers of `channel` that `member` arrived
    /// (except `joiner`, the connection that joined).
    pub fn announce_member_added(&self, channel: &str, member: Member, joiner: Option<SocketId>) {
        self.publish(&Arc::new(Event::new(
            channel,
            EventKind::MemberAdded(member),
            joiner,
        )));
    }

    /// Tells this node's subscribers of `channel` that `member` left.
    pub fn announce_member_removed(&self, channel: &str, member: Member) {
        self.publish(&Arc::new(Event::new(
            channel,
            EventKind::MemberRemoved(member),
            None,
        )));
    }

    /// The last event of a cache channel, if it has not expired.
    pub fn cached(&self, channel: &str) -> Option<Arc<Event>> {
        let mut cache = self.cache.lock();
        match cache.get(channel) {
            Some((event, at)) if at.elapsed() < CACHE_TTL => Some(event.clone()),
            Some(_) => {
                cache.remove(channel);
                None
            }
            None => None,
        }
    }

    /// Forgets expired cached events (called periodically).
    pub fn sweep_cache(&self) {
        self.cache
            .lock()
            .retain(|_, (_, at)| at.elapsed() < CACHE_TTL);
    }

    /// Remembers that `conn` belongs to `user` (sign-in or presence), so that
    /// terminate_connections can reach it.
    pub fn add_user_connection(&self, user: &str, conn: &Arc<Connection>) {
        let mut users = self.users.lock();
        let list = users.entry(user.into()).or_default();
        if !list.iter().any(|c| Arc::ptr_eq(c, conn)) {
            list.push(conn.clone());
            if list.len() == 1 {
                // Under the lock: the adapter sees this node's verdicts on
                // the user in order.
                self.adapter.user_connected(self, user);
            }
        }
    }

    pub fn remove_user_connection(&self, user: &str, conn: &Arc<Connection>) {
        let mut users = self.users.lock();
        if let Some(list) = users.get_mut(user) {
            let before = list.len();
            list.retain(|c| !Arc::ptr_eq(c, conn));
            if list.is_empty() {
                users.remove(user);
                if before > 0 {
                    self.adapter.user_disconnected(self, user);
                }
            }
        }
    }

    /// Every connection of `user` on this node.
    pub fn user_connections(&self, user: &str) -> Vec<Arc<Connection>> {
        self.users.lock().get(user).cloned().unwrap_or_default()
    }

    /// Whether `socket` is subscribed to `channel` here.
    pub fn is_subscribed(&self, channel: &str, socket: &SocketId) -> bool {
        let ch = self.shard(channel).read().get(channel).cloned();
        ch.is_some_and(|ch| {
            ch.state
                .lock()
                .subscribers
                .iter()
                .any(|c| &c.socket_id == socket)
        })
    }

    /// Occupied channels, optionally only those starting with `prefix`.
    pub fn channels(&self, prefix: Option<&str>) -> Vec<ChannelSummary> {
        let mut out = Vec::new();
        for shard in self.shards.iter() {
            let shard = shard.read();
            for (name, ch) in shard.iter() {
                if prefix.is_some_and(|p| !name.starts_with(p)) {
                    continue;
                }
                out.push(summarize(name, &ch.state.lock()));
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// One channel, or `None` when nobody is subscribed.
    pub fn channel(&self, name: &str) -> Option<ChannelSummary> {
        let ch = self.shard(name).read().get(name).cloned()?;
        let state = ch.state.lock();
        Some(summarize(name, &state))
    }

    /// Presence members of a channel on this node (empty when unoccupied).
    pub fn local_members(&self, name: &str) -> Vec<Member> {
        let ch = self.shard(name).read().get(name).cloned();
        ch.map(|ch| {
            ch.state
                .lock()
                .members
                .values()
                .map(|(m, _)| m.clone())
                .collect()
        })
        .unwrap_or_default()
    }

    /// Presence members of a channel across the cluster.
    pub fn members(&self, name: &str) -> Vec<Member> {
        let mut members = self.local_members(name);
        for remote in self.adapter.remote_members(self, name) {
            if !members.iter().any(|m| m.key == remote.key) {
                members.push(remote);
            }
        }
        members
    }

    /// Every presence membership held on this node: (channel, member).
    pub fn local_presence(&self) -> Vec<(String, Member)> {
        let mut out = Vec::new();
        for shard in self.shards.iter() {
            for (name, ch) in shard.read().iter() {
                for (member, _) in ch.state.lock().members.values() {
                    out.push((name.to_string(), member.clone()));
                }
            }
        }
        out
    }

    /// Closes `user`'s connections on this node (the app's
    /// terminate_connections): a notice in the wire's terms, then 4009.
    pub fn terminate_user(&self, user: &str) {
        for conn in self.user_connections(user) {
            conn.terminate(4009, "connection terminated by the app");
        }
    }

    /// The node's adapter.
    pub fn adapter(&self) -> &Arc<dyn Adapter> {
        &self.adapter
    }
}

fn summarize(name: &str, state: &ChannelState) -> ChannelSummary {
    ChannelSummary {
        name: name.to_string(),
        subscription_count: state.subscribers.len(),
        user_count: name.starts_with("presence-").then_some(state.members.len()),
    }
}

mod happenings;
pub use happenings::WatchlistEncoder;

#[cfg(test)]
mod tests;

#[cfg(test)]
mod happenings_tests;
