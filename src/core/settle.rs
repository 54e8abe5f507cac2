//! Settling "first/last anywhere" verdicts into happenings: a departure
//! (channel vacated, member removed, user offline) is held for
//! [`HOLD`](super::happenings::HOLD) and reported only if nothing came back
//! meanwhile; a come-back within the hold is reported neither.
//!
//! The same [`Settler`] serves one node (the local adapter: the hold ends
//! on a timer) and a cluster (the Redis adapter: the node that owns a
//! departure announces the end of its hold through the ordered cluster
//! stream, so every node settles — or cancels — at the same point of the
//! stream and they all agree on what was reported).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::happenings::{ClusterWide, HOLD, SeenEverywhere};

/// What a verdict is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Subject {
    /// A channel's occupancy.
    Channel(Box<str>),
    /// A user's membership of a presence channel.
    Member { channel: Box<str>, user: Box<str> },
    /// A user's being online (signed in or present) anywhere.
    User(Box<str>),
}

/// A happening the settled verdict turns into.
pub enum Report {
    /// Emit once for the cluster (by the deciding node).
    Cluster(ClusterWide),
    /// Emit on every node.
    Seen(SeenEverywhere),
}

impl Subject {
    /// The happening of an arrival.
    pub fn arrived(&self) -> Report {
        match self {
            Subject::Channel(c) => {
                Report::Cluster(ClusterWide::ChannelOccupied { channel: c.clone() })
            }
            Subject::Member { channel, user } => Report::Cluster(ClusterWide::MemberAdded {
                channel: channel.clone(),
                user_id: user.clone(),
            }),
            Subject::User(u) => Report::Seen(SeenEverywhere::UserOnline { user_id: u.clone() }),
        }
    }

    /// The happening of a settled departure.
    pub fn departed(&self) -> Report {
        match self {
            Subject::Channel(c) => {
                Report::Cluster(ClusterWide::ChannelVacated { channel: c.clone() })
            }
            Subject::Member { channel, user } => Report::Cluster(ClusterWide::MemberRemoved {
                channel: channel.clone(),
                user_id: user.clone(),
            }),
            Subject::User(u) => Report::Seen(SeenEverywhere::UserOffline { user_id: u.clone() }),
        }
    }
}

struct Pending {
    owner: Box<str>,
    generation: u64,
    since: Instant,
}

/// Departures being held, by (app, subject).
#[derive(Default)]
pub struct Settler {
    pending: HashMap<(Arc<str>, Subject), Pending>,
}

impl Settler {
    /// An arrival. True when it is to be reported; false when it is a
    /// come-back within a departure's hold (then neither is reported).
    pub fn arrive(&mut self, app: &Arc<str>, subject: &Subject) -> bool {
        self.pending
            .remove(&(app.clone(), subject.clone()))
            .is_none()
    }

    /// A departure decided by `owner` (a node id; empty for the local
    /// adapter), to be settled by [`Settler::settle`] with `generation`.
    pub fn depart(&mut self, app: &Arc<str>, subject: Subject, owner: &str, generation: u64) {
        self.pending.insert(
            (app.clone(), subject),
            Pending {
                owner: owner.into(),
                generation,
                since: Instant::now(),
            },
        );
    }

    /// The hold of `owner`'s departure `generation` ended: true when it is
    /// still pending (report it), false when a come-back cancelled it or a
    /// later departure replaced it.
    pub fn settle(
        &mut self,
        app: &Arc<str>,
        subject: &Subject,
        owner: &str,
        generation: u64,
    ) -> bool {
        let key = (app.clone(), subject.clone());
        match self.pending.get(&key) {
            Some(p) if &*p.owner == owner && p.generation == generation => {
                self.pending.remove(&key);
                true
            }
            _ => false,
        }
    }

    /// Settles at once every departure `owner` holds (it died): they are
    /// reported now.
    pub fn take_owner(&mut self, owner: &str) -> Vec<(Arc<str>, Subject)> {
        let keys: Vec<_> = self
            .pending
            .iter()
            .filter(|(_, p)| &*p.owner == owner)
            .map(|(k, _)| k.clone())
            .collect();
        for k in &keys {
            self.pending.remove(k);
        }
        keys
    }

    /// Nodes that own a held departure.
    pub fn owners(&self) -> Vec<Box<str>> {
        let mut out: Vec<Box<str>> = self.pending.values().map(|p| p.owner.clone()).collect();
        out.sort();
        out.dedup();
        out
    }

    /// Forgets departures held far longer than the hold (their end was
    /// lost, e.g. in a Redis outage), so they cannot swallow a later arrival.
    pub fn forget_stale(&mut self, older_than: Duration) {
        self.pending.retain(|_, p| p.since.elapsed() < older_than);
    }

    /// Whether a departure of `subject` is being held.
    pub fn is_pending(&self, app: &Arc<str>, subject: &Subject) -> bool {
        self.pending.contains_key(&(app.clone(), subject.clone()))
    }

    pub fn len(&self) -> usize {
        self.pending.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }
}

/// A departure whose hold is running: (app, subject, generation).
pub type Held = (Arc<str>, Subject, u64);

/// Departures waiting for their hold to end, in order (every hold is the
/// same length, so a FIFO queue is a timer wheel). Bounded: when full, a
/// departure is settled at once instead of held.
pub const HOLD_QUEUE: usize = 65_536;

/// The sending side of the node's hold queue.
#[derive(Clone)]
pub struct HoldQueue {
    tx: mpsc::Sender<(tokio::time::Instant, Held)>,
}

impl HoldQueue {
    /// A queue and its receiving side (for [`run_holds`]).
    pub fn new() -> (Self, mpsc::Receiver<(tokio::time::Instant, Held)>) {
        let (tx, rx) = mpsc::channel(HOLD_QUEUE);
        (HoldQueue { tx }, rx)
    }

    /// Starts `held`'s hold; gives it back when the queue is full (settle
    /// it now).
    pub fn hold(&self, held: Held) -> Result<(), Held> {
        self.tx
            .try_send((tokio::time::Instant::now() + HOLD, held))
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full((_, h))
                | mpsc::error::TrySendError::Closed((_, h)) => h,
            })
    }
}

/// Waits out each hold in turn and hands it to `expired`.
pub async fn run_holds(
    mut rx: mpsc::Receiver<(tokio::time::Instant, Held)>,
    expired: impl Fn(Held),
) {
    while let Some((deadline, held)) = rx.recv().await {
        tokio::time::sleep_until(deadline).await;
        expired(held);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_come_back_cancels_both_and_a_late_settle_is_ignored() {
        let mut s = Settler::default();
        let app: Arc<str> = "1".into();
        let ch = Subject::Channel("a".into());
        assert!(s.arrive(&app, &ch));
        s.depart(&app, ch.clone(), "", 1);
        assert!(!s.arrive(&app, &ch), "a come-back is not reported");
        assert!(
            !s.settle(&app, &ch, "", 1),
            "the cancelled departure is not either"
        );
        s.depart(&app, ch.clone(), "", 2);
        assert!(
            !s.settle(&app, &ch, "", 1),
            "an older hold does not settle a newer one"
        );
        assert!(!s.settle(&app, &ch, "other", 2), "nor another owner's");
        assert!(s.settle(&app, &ch, "", 2));
        assert!(s.is_empty());
    }

    #[test]
    fn a_dead_owner_settles_now() {
        let mut s = Settler::default();
        let app: Arc<str> = "1".into();
        s.depart(&app, Subject::User("u".into()), "n1", 1);
        s.depart(&app, Subject::User("v".into()), "n2", 1);
        let taken = s.take_owner("n1");
        assert_eq!(taken, vec![(app.clone(), Subject::User("u".into()))]);
        assert_eq!(s.len(), 1);
    }
}
