//! Cluster-wide happenings over the cluster adapter: occupancy, presence and
//! online users decided once for the whole cluster.
//!
//! Channel occupancy and online users ride the same replicated deltas as
//! presence, under two pseudo-channels no Pusher channel can be named
//! (`#` is not allowed in channel names): node N "joins" [`OCCUPIED`] with
//! the channel name as its key when its first local subscriber arrives,
//! and [`ONLINE`] with the user id when a user's first local connection
//! does; it "leaves" on the last. Every node folds the deltas in the broker's
//! one order, so every node reaches the same verdict on "first anywhere"
//! and "last anywhere" (the replica), and:
//!
//! - an **arrival** is reported by the node whose delta decided it (the
//!   message's origin), once; a come-back within a departure's hold is
//!   reported by nobody;
//! - a **departure** is held: every node records it as pending, owned by
//!   the deciding node; after [`HOLD`](crate::core::happenings::HOLD) the
//!   owner publishes a `SETTLE` on the same ordered stream, and every node
//!   settles it at that point of the stream — unless an arrival came
//!   first, which every node then saw first too. The owner reports it.
//! - a **dead node** (stopped heartbeating, or left): the node that wins
//!   its reap lock reports what its users owe (their departures, at once)
//!   and the departures it was holding; every node drops it from its
//!   replica and tells its own watchers.
//!
//! Online users are also seen on every node (the watchlist): each node
//! reports arrivals and settled departures of [`ONLINE`] to its own
//! watchers, at the same point of the stream.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::ClusterAdapter;
use super::message::{self, JOIN, LEAVE, Message, SETTLE};
use super::replica::Change;
use crate::adapter::broker::Write;
use crate::core::event::{Member, RawJson};
use crate::core::hub::Hub;
use crate::core::settle::{Report, Subject};

/// Pseudo-channel of channel occupancy (members are channel names).
pub const OCCUPIED: &str = "#occupied";
/// Pseudo-channel of online users (members are user ids).
pub const ONLINE: &str = "#online";

/// Whether a replica channel is one of the pseudo-channels.
pub fn is_pseudo(channel: &str) -> bool {
    channel.starts_with('#')
}

/// The subject of a replica membership.
pub fn subject_of(channel: &str, key: &str) -> Subject {
    match channel {
        OCCUPIED => Subject::Channel(key.into()),
        ONLINE => Subject::User(key.into()),
        _ => Subject::Member {
            channel: channel.into(),
            user: key.into(),
        },
    }
}

/// The replica membership of a subject: (channel, key).
fn membership_of(subject: &Subject) -> (&str, &str) {
    match subject {
        Subject::Channel(c) => (OCCUPIED, c),
        Subject::User(u) => (ONLINE, u),
        Subject::Member { channel, user } => (channel, user),
    }
}

/// The stored member of a pseudo-membership.
fn pseudo_member(key: &str) -> Member {
    Member::new(RawJson::string(key), None)
}

impl ClusterAdapter {
    /// Emits `report` on this node: cluster-wide ones only when this node
    /// decided them, cluster-view ones always.
    fn report(hub: &Hub, report: Report, decided_here: bool) {
        if decided_here || matches!(report, Report::Seen(_)) {
            hub.report(report);
        }
    }

    /// This node's first local holder of a pseudo-membership arrived.
    pub(super) fn pseudo_join(&self, hub: &Hub, channel: &str, key: &str) {
        let app = &hub.app.id;
        let member = pseudo_member(key);
        self.send(Write::SetMember {
            field: message::presence_field(app, channel, key),
            value: message::stored_member(&member),
        });
        if self.healthy.load(Ordering::SeqCst) {
            self.broadcast(&super::join_message(&self.id, app, channel, &member, None));
        } else if self.replica.lock().join(app, channel, &self.id, member) {
            // The broker is away: this node's verdict stands for now (the resync
            // re-announces it).
            self.arrived(hub, subject_of(channel, key), true);
        }
    }

    /// This node's last local holder of a pseudo-membership left.
    pub(super) fn pseudo_leave(&self, hub: &Hub, channel: &str, key: &str) {
        let app = &hub.app.id;
        self.send(Write::DelMember {
            field: message::presence_field(app, channel, key),
        });
        if self.healthy.load(Ordering::SeqCst) {
            self.broadcast(&self.leave_message(app, channel, key));
        } else if self
            .replica
            .lock()
            .leave(app, channel, &self.id, key)
            .is_some()
        {
            Self::report(hub, subject_of(channel, key).departed(), true);
        }
    }

    /// A `LEAVE` delta of this node, with the generation its hold will
    /// settle.
    pub(super) fn leave_message(&self, app: &str, channel: &str, key: &str) -> Message {
        Message {
            t: LEAVE.into(),
            o: self.id.clone(),
            a: app.into(),
            c: Some(channel.into()),
            u: Some(key.into()),
            q: Some(self.generation.fetch_add(1, Ordering::Relaxed)),
            ..Message::default()
        }
    }

    /// An arrival decided by a `JOIN` (from `decided_here` or another
    /// node): reported unless it is a come-back.
    pub(super) fn arrived(&self, hub: &Hub, subject: Subject, decided_here: bool) {
        if self.settler.lock().arrive(hub.app_id(), &subject) {
            Self::report(hub, subject.arrived(), decided_here);
        }
    }

    /// A departure decided by `msg` (a `LEAVE`): held on every node; the
    /// owner starts the hold.
    pub(super) fn departed(&self, hub: &Hub, subject: Subject, msg: &Message) {
        let generation = msg.q.unwrap_or(0);
        self.settler
            .lock()
            .depart(hub.app_id(), subject.clone(), &msg.o, generation);
        if msg.o == self.id && !hub.hold(subject.clone(), generation) {
            self.end_hold(hub, subject, generation);
        }
    }

    /// The owner's hold ended: settle it at this point of the stream.
    pub(super) fn end_hold(&self, hub: &Hub, subject: Subject, generation: u64) {
        let (channel, key) = membership_of(&subject);
        self.broadcast(&Message {
            t: SETTLE.into(),
            o: self.id.clone(),
            a: hub.app.id.clone(),
            c: Some(channel.into()),
            u: Some(key.into()),
            q: Some(generation),
            ..Message::default()
        });
    }

    /// A `SETTLE` from the stream.
    pub(super) fn on_settle(&self, msg: &Message) {
        let (Some(hub), Some(channel), Some(key), Some(generation)) =
            (self.hub(&msg.a), msg.c.as_deref(), msg.u.as_deref(), msg.q)
        else {
            return;
        };
        let subject = subject_of(channel, key);
        let settled = self
            .settler
            .lock()
            .settle(hub.app_id(), &subject, &msg.o, generation);
        if settled {
            Self::report(&hub, subject.departed(), msg.o == self.id);
        }
    }

    /// A `JOIN`/`LEAVE` of a pseudo-channel, after the replica took it.
    pub(super) fn on_pseudo(&self, msg: &Message, channel: &str, key: &str, changed: bool) {
        if !changed {
            return;
        }
        let Some(hub) = self.hub(&msg.a) else { return };
        let subject = subject_of(channel, key);
        match msg.t.as_str() {
            JOIN => self.arrived(&hub, subject, msg.o == self.id),
            _ => self.departed(&hub, subject, msg),
        }
    }

    /// What a gone node owed: `changes` (its memberships that nobody else
    /// holds, now dropped) and the departures it was holding. Every node
    /// tells its watchers; `won` (this node holds the reap lock) reports
    /// the cluster-wide ones.
    pub(super) fn settle_gone(&self, node: &str, changes: &[Change], won: bool) {
        let owed = self.settler.lock().take_owner(node);
        for change in changes {
            let Change::Removed {
                app,
                channel,
                member,
            } = change
            else {
                continue;
            };
            if let Some(hub) = self.hub(app) {
                Self::report(&hub, subject_of(channel, &member.key).departed(), won);
            }
        }
        for (app, subject) in owed {
            if let Some(hub) = self.hub(&app) {
                Self::report(&hub, subject.departed(), won);
            }
        }
    }

    /// Pseudo-changes found by a resync: the cluster view changed while
    /// this node was away; only its own watchers hear of it.
    pub(super) fn seen_changes(&self, changes: &[Change]) {
        for change in changes {
            let (app, channel, member, arrived) = match change {
                Change::Added {
                    app,
                    channel,
                    member,
                } => (app, channel, member, true),
                Change::Removed {
                    app,
                    channel,
                    member,
                } => (app, channel, member, false),
            };
            if &**channel != ONLINE {
                continue;
            }
            let Some(hub) = self.hub(app) else { continue };
            let subject = Subject::User(member.key.clone());
            hub.report(if arrived {
                subject.arrived()
            } else {
                subject.departed()
            });
        }
    }

    /// This node's pseudo-memberships, for a resync: its occupied channels
    /// and its connected users, as (app, channel, member).
    pub(super) fn local_pseudo(hub: &Arc<Hub>) -> Vec<(String, String, Member)> {
        let app = &hub.app.id;
        let mut out: Vec<(String, String, Member)> = hub
            .channels(None)
            .into_iter()
            .map(|c| (app.clone(), OCCUPIED.to_string(), pseudo_member(&c.name)))
            .collect();
        out.extend(
            hub.local_users()
                .into_iter()
                .map(|u| (app.clone(), ONLINE.to_string(), pseudo_member(&u))),
        );
        out
    }

    /// Which of `users` are online anywhere (settled).
    pub(super) fn online_among(&self, hub: &Hub, users: &[Box<str>]) -> Vec<Box<str>> {
        let replica = self.replica.lock();
        let settler = self.settler.lock();
        users
            .iter()
            .filter(|u| {
                replica.contains(&hub.app.id, ONLINE, u)
                    || settler.is_pending(hub.app_id(), &Subject::User((*u).clone()))
            })
            .cloned()
            .collect()
    }
}
