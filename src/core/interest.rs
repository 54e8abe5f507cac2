//! Interest-based routing, as the core sees it: a node asks the cluster
//! for a channel's events only while it has local subscribers for it.
//!
//! An [`Interest`] is one holder's claim on a channel's events (the hub's
//! channel holds one from its first local subscriber to its last; a
//! front-end holds one while it waits to confirm a subscription). The
//! engine counts holders per channel: the first makes it subscribe on its
//! broker, dropping the last makes it unsubscribe. A front-end confirms a
//! subscription only once [`Interest::is_routed`] (or after
//! [`Interest::routed`] resolves), so an event published after the client
//! heard "subscribed" always reaches it.
//!
//! Engines without routing (the local adapter, one broker channel for
//! everything) hand out [`Interest::always`], which costs nothing.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

/// An engine's per-channel routing state (see [`crate::adapter::routes`]).
pub trait Routes: Send + Sync + 'static {
    /// Whether events of `key`'s channel, published on any node, now reach
    /// this node.
    fn is_routed(&self, key: &str) -> bool;
    /// Woken whenever some channel becomes routed (or routing is lifted).
    fn changed(&self) -> &Notify;
    /// One holder of `key` let go.
    fn release(&self, key: &str);
}

/// One claim on a channel's events; released on drop.
#[must_use = "the channel's interest is released as soon as this is dropped"]
pub struct Interest {
    held: Option<(Arc<dyn Routes>, Box<str>)>,
}

impl Interest {
    /// No routing: every event reaches every node anyway.
    pub fn always() -> Self {
        Interest { held: None }
    }

    /// A claim registered with `routes` under `key` (the engine counted it
    /// before handing it out).
    pub fn held(routes: Arc<dyn Routes>, key: Box<str>) -> Self {
        Interest {
            held: Some((routes, key)),
        }
    }

    /// Whether events of the channel reach this node right now.
    pub fn is_routed(&self) -> bool {
        self.held
            .as_ref()
            .is_none_or(|(routes, key)| routes.is_routed(key))
    }

    /// Resolves once the channel is routed, or after `within` (then false:
    /// the broker is slow, and the caller proceeds rather than hang). The
    /// future does not hold the claim: keep `self` alive meanwhile.
    pub fn routed(&self, within: Duration) -> impl Future<Output = bool> + Send + 'static {
        let held = self
            .held
            .as_ref()
            .map(|(routes, key)| (routes.clone(), key.clone()));
        async move {
            let Some((routes, key)) = held else {
                return true;
            };
            let wait = async {
                loop {
                    let changed = routes.changed().notified();
                    tokio::pin!(changed);
                    changed.as_mut().enable();
                    if routes.is_routed(&key) {
                        return;
                    }
                    changed.await;
                }
            };
            tokio::time::timeout(within, wait).await.is_ok()
        }
    }
}

impl Default for Interest {
    fn default() -> Self {
        Interest::always()
    }
}

impl Drop for Interest {
    fn drop(&mut self) {
        if let Some((routes, key)) = self.held.take() {
            routes.release(&key);
        }
    }
}

impl std::fmt::Debug for Interest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.held {
            Some((_, key)) => write!(f, "Interest({key:?})"),
            None => f.write_str("Interest(always)"),
        }
    }
}

/// How long a front-end waits for a channel's route before it confirms a
/// subscription anyway (a broker that slow is logged by the engine).
pub const ROUTE_WAIT: Duration = Duration::from_secs(3);
