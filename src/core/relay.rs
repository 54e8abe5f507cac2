//! Messages between the nodes of a cluster, for state that lives on one
//! node and is reached from another (pusher-js's HTTP fallback sessions:
//! a request that lands on a node that does not hold its session is
//! forwarded to the one that does). The core defines the seam; the Redis
//! engine implements it ([`crate::adapter::broker::link`]).

use bytes::Bytes;
use tokio::sync::mpsc;

/// A node's link to the other nodes.
pub trait Link: Send + Sync + 'static {
    /// This node's id, as other nodes address it.
    fn node_id(&self) -> &str;

    /// Sends `payload` to node `to`, or to every other node when `None`.
    /// Never waits; a message may be lost while the cluster is unreachable
    /// (callers time out).
    fn send(&self, to: Option<&str>, payload: Bytes);

    /// The messages for this node (taken once, by the one consumer).
    fn incoming(&self) -> Option<mpsc::Receiver<Bytes>>;
}
