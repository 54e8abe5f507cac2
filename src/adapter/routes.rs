//! The engines' side of interest-based routing: per channel, how many
//! holders want its events on this node and whether the broker
//! subscription for it is active. Engine-agnostic: the Redis, Redis
//! Cluster and NATS adapters drive it with their own subscribe calls.
//!
//! - [`RouteTable::hold`] counts a holder; the first marks the channel
//!   *dirty*. Dropping the last [`Interest`] marks it dirty again.
//! - The engine's subscription task takes the dirty keys
//!   ([`RouteTable::plan`]), subscribes/unsubscribes them in one batch on
//!   its broker connection, and reports the subscriptions that the broker
//!   acknowledged ([`RouteTable::subscribed`]): only then is the channel
//!   routed and waiting subscribers are confirmed. An unsubscribe makes the
//!   channel unrouted *before* it is sent, so a holder arriving meanwhile
//!   waits for the re-subscribe. Flapping (last leaves, first returns)
//!   therefore costs at most one unsubscribe and one subscribe, and never
//!   a lost event.
//! - While the engine is offline ([`RouteTable::set_online`] false) every
//!   channel counts as routed: nothing crosses nodes anyway, local clients
//!   are served, and the reconnect subscribes every held channel before the
//!   engine reports itself healthy again.
//!
//! Keys are the broker's names for the channels (so the subscription task
//! uses them as they are). Memory: one map entry per channel held on this
//! node (the key plus 8 bytes); no task, no channel, no timer per channel.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};

use parking_lot::Mutex;
use tokio::sync::Notify;

use crate::core::interest::{Interest, Routes};

#[derive(Default, Debug)]
struct Entry {
    holders: u32,
    /// The broker acknowledged our subscription (and no unsubscribe is
    /// under way).
    subscribed: bool,
}

/// What the subscription task should do now.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    pub subscribe: Vec<Box<str>>,
    pub unsubscribe: Vec<Box<str>>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.subscribe.is_empty() && self.unsubscribe.is_empty()
    }
}

/// Per-channel routing state of one engine on this node.
pub struct RouteTable {
    this: Weak<RouteTable>,
    entries: Mutex<HashMap<Box<str>, Entry>>,
    dirty: Mutex<HashSet<Box<str>>>,
    /// Wakes the subscription task (one permit is stored).
    work: Notify,
    /// Wakes waiting subscribers.
    changed: Notify,
    online: AtomicBool,
}

impl RouteTable {
    pub fn new() -> Arc<Self> {
        Arc::new_cyclic(|this| RouteTable {
            this: this.clone(),
            entries: Mutex::new(HashMap::new()),
            dirty: Mutex::new(HashSet::new()),
            work: Notify::new(),
            changed: Notify::new(),
            online: AtomicBool::new(false),
        })
    }

    /// Counts a holder of `key` (see [`crate::core::interest`]).
    pub fn hold(&self, key: String) -> Interest {
        let Some(this) = self.this.upgrade() else {
            return Interest::always();
        };
        let key: Box<str> = key.into();
        let needs_work = {
            let mut entries = self.entries.lock();
            let entry = entries.entry(key.clone()).or_default();
            entry.holders += 1;
            entry.holders == 1 && !entry.subscribed
        };
        if needs_work {
            self.mark(key.clone());
        }
        Interest::held(this, key)
    }

    fn mark(&self, key: Box<str>) {
        self.dirty.lock().insert(key);
        self.work.notify_one();
    }

    /// Resolves when there may be work for the subscription task.
    pub async fn work(&self) {
        self.work.notified().await;
    }

    /// Takes the dirty keys and decides for each. Keys to unsubscribe stop
    /// being routed now (before the broker hears it).
    pub fn plan(&self) -> Plan {
        let dirty: Vec<Box<str>> = self.dirty.lock().drain().collect();
        let mut plan = Plan::default();
        let mut entries = self.entries.lock();
        for key in dirty {
            let Some(entry) = entries.get_mut(&key) else {
                continue;
            };
            match (entry.holders > 0, entry.subscribed) {
                (true, false) => plan.subscribe.push(key),
                (false, true) => {
                    entry.subscribed = false;
                    plan.unsubscribe.push(key);
                }
                (false, false) => {
                    entries.remove(&key);
                }
                (true, true) => {}
            }
        }
        plan
    }

    /// The broker acknowledged subscriptions to `keys`: they are routed.
    /// Keys whose last holder left meanwhile are re-examined.
    pub fn subscribed(&self, keys: &[Box<str>]) {
        let mut abandoned = Vec::new();
        {
            let mut entries = self.entries.lock();
            for key in keys {
                // An entry dropped meanwhile comes back, to be unsubscribed.
                let entry = entries.entry(key.clone()).or_default();
                entry.subscribed = true;
                if entry.holders == 0 {
                    abandoned.push(key.clone());
                }
            }
        }
        for key in abandoned {
            self.mark(key);
        }
        self.changed.notify_waiters();
    }

    /// The broker connection is up (after every held channel was
    /// subscribed) or down (every subscription is gone with it).
    pub fn set_online(&self, online: bool) {
        if !online {
            let mut entries = self.entries.lock();
            entries.retain(|_, e| {
                e.subscribed = false;
                e.holders > 0
            });
            self.dirty.lock().clear();
        }
        self.online.store(online, Ordering::SeqCst);
        self.changed.notify_waiters();
        if online {
            self.work.notify_one();
        }
    }

    /// Every key with holders, marked subscribed by the caller's
    /// resubscription ([`RouteTable::subscribed`]) after a reconnect.
    pub fn wanted(&self) -> Vec<Box<str>> {
        self.dirty.lock().clear();
        self.entries
            .lock()
            .iter()
            .filter(|(_, e)| e.holders > 0)
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// Channels this node is subscribed to on the broker.
    pub fn subscription_count(&self) -> usize {
        self.entries
            .lock()
            .values()
            .filter(|e| e.subscribed)
            .count()
    }
}

impl Routes for RouteTable {
    fn is_routed(&self, key: &str) -> bool {
        !self.online.load(Ordering::SeqCst)
            || self.entries.lock().get(key).is_some_and(|e| e.subscribed)
    }

    fn changed(&self) -> &Notify {
        &self.changed
    }

    fn release(&self, key: &str) {
        let last = {
            let mut entries = self.entries.lock();
            match entries.get_mut(key) {
                Some(entry) => {
                    entry.holders = entry.holders.saturating_sub(1);
                    entry.holders == 0
                }
                None => false,
            }
        };
        if last {
            self.mark(key.into());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscribe_on_first_holder_unsubscribe_on_last() {
        let t = RouteTable::new();
        t.set_online(true);
        let a = t.hold("c".into());
        let b = t.hold("c".into());
        assert!(!a.is_routed(), "not routed before the broker acknowledged");
        let plan = t.plan();
        assert_eq!(plan.subscribe, vec![Box::from("c")]);
        t.subscribed(&plan.subscribe);
        assert!(a.is_routed() && b.is_routed());
        drop(a);
        assert!(t.plan().is_empty(), "one holder left");
        drop(b);
        let plan = t.plan();
        assert_eq!(plan.unsubscribe, vec![Box::from("c")]);
        assert!(t.plan().is_empty());
    }

    #[test]
    fn a_holder_arriving_during_unsubscribe_waits_for_resubscribe() {
        let t = RouteTable::new();
        t.set_online(true);
        let a = t.hold("c".into());
        t.subscribed(&t.plan().subscribe);
        drop(a);
        let plan = t.plan();
        assert_eq!(plan.unsubscribe.len(), 1);
        // The unsubscribe is in flight; a new subscriber arrives.
        let b = t.hold("c".into());
        assert!(
            !b.is_routed(),
            "must wait: the unsubscribe may land after it"
        );
        let plan = t.plan();
        assert_eq!(plan.subscribe, vec![Box::from("c")]);
        t.subscribed(&plan.subscribe);
        assert!(b.is_routed());
    }

    #[test]
    fn flapping_before_the_task_runs_costs_nothing() {
        let t = RouteTable::new();
        t.set_online(true);
        let a = t.hold("c".into());
        t.subscribed(&t.plan().subscribe);
        drop(a);
        let b = t.hold("c".into());
        assert!(b.is_routed(), "still subscribed: no wait");
        assert!(t.plan().is_empty());
    }

    #[test]
    fn abandoned_while_subscribing_is_unsubscribed() {
        let t = RouteTable::new();
        t.set_online(true);
        let a = t.hold("c".into());
        let plan = t.plan();
        drop(a);
        t.plan(); // the release's dirty mark: still unsubscribed, entry dropped
        t.subscribed(&plan.subscribe);
        assert_eq!(t.plan().unsubscribe, vec![Box::from("c")]);
        assert_eq!(t.subscription_count(), 0);
    }

    #[test]
    fn offline_routes_everything_and_reconnect_resubscribes() {
        let t = RouteTable::new();
        let a = t.hold("c".into());
        assert!(a.is_routed(), "offline: nothing to wait for");
        t.set_online(true);
        assert!(!a.is_routed());
        let wanted = t.wanted();
        t.subscribed(&wanted);
        assert!(a.is_routed());
        t.set_online(false);
        t.set_online(true);
        assert!(!a.is_routed(), "subscriptions died with the connection");
        assert_eq!(t.wanted(), vec![Box::from("c")]);
    }

    #[tokio::test]
    async fn routed_resolves_when_acknowledged() {
        let t = RouteTable::new();
        t.set_online(true);
        let a = t.hold("c".into());
        let wait = tokio::spawn(a.routed(std::time::Duration::from_secs(5)));
        tokio::task::yield_now().await;
        t.subscribed(&t.plan().subscribe);
        assert!(wait.await.unwrap());
        let slow = t.hold("d".into());
        assert!(!slow.routed(std::time::Duration::from_millis(20)).await);
    }
}
