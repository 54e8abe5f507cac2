//! Brokers: what the cluster adapter ([`crate::adapter::cluster`]) needs
//! from the system that connects the nodes — pub/sub on named channels and
//! a little shared state (each node's share of presence, the nodes'
//! heartbeats, a lock per dead node). One adapter, three brokers:
//!
//! - [`redis`]: one Redis (or a Sentinel-managed one): `PUBLISH`/`SUBSCRIBE`,
//!   a hash per node, a sorted set of heartbeats, `SET NX` locks.
//! - [`redis_cluster`]: a Redis Cluster: sharded pub/sub
//!   (`SPUBLISH`/`SSUBSCRIBE`), so each channel lives on one shard and the
//!   broker scales out with its masters; the state keys share one hash tag.
//! - [`nats`]: NATS core pub/sub (a subject per channel) and JetStream
//!   key-value buckets for the state.
//!
//! Channel names are the adapter's (`{prefix}#cluster`,
//! `{prefix}#ch#{app}#{channel}`, ...); a broker maps them to its own
//! names and hands received messages back under the adapter's name.

pub mod link;
pub mod nats;
pub mod redis;
pub mod redis_cluster;
pub mod redis_state;

use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::Stream;

use crate::core::adapter::BoxFuture;

/// A broker failure (connection lost, command refused), for the log.
pub type BrokerError = Box<dyn std::error::Error + Send + Sync>;
pub type BrokerResult<T> = Result<T, BrokerError>;

/// A write the adapter's writer task batches.
#[derive(Debug, Clone)]
pub enum Write {
    Publish {
        channel: String,
        payload: Bytes,
    },
    /// Sets a field of this node's presence share.
    SetMember {
        field: String,
        value: String,
    },
    /// Deletes a field of this node's presence share.
    DelMember {
        field: String,
    },
}

/// A received message: the adapter's channel name and the payload.
pub type Incoming = (String, Bytes);
/// The messages of one subscription connection; ends when it is lost.
pub type Messages = Pin<Box<dyn Stream<Item = Incoming> + Send>>;

/// Adds and removes channels of a live subscription connection.
pub trait Subscriptions: Send {
    fn subscribe<'a>(&'a mut self, names: &'a [&'a str]) -> BoxFuture<'a, BrokerResult<()>>;
    fn unsubscribe<'a>(&'a mut self, names: &'a [&'a str]) -> BoxFuture<'a, BrokerResult<()>>;
}

/// A live subscription connection: its control half and its messages.
pub type Subscriber = (Box<dyn Subscriptions>, Messages);

/// One field of a node's presence share: (field, value).
pub type ShareEntry = (String, String);

/// The broker seam of the cluster adapter. A broker is made for one node
/// (its id) and one cluster (its prefix); every call may fail, and the
/// adapter retries or waits for the next heartbeat.
pub trait Broker: Send + Sync + 'static {
    /// `redis`, `redis-cluster` or `nats` (logs, `/ready`).
    fn name(&self) -> &'static str;

    /// A new subscription connection subscribed to `fixed`. The stream
    /// ends when the connection is lost; the adapter then opens another
    /// and resynchronises.
    fn subscriber(&self, fixed: Vec<String>) -> BoxFuture<'_, BrokerResult<Subscriber>>;

    /// Sends `batch` in order (a channel's publishes never overtake each
    /// other), in as few round trips as the broker allows.
    fn write<'a>(&'a self, batch: &'a [Write]) -> BoxFuture<'a, BrokerResult<()>>;

    /// Replaces this node's presence share with `entries`, then sends
    /// `announce` (in order), then registers the node as alive at `now_ms`
    /// — only then, so that a node in the set is never read half-written.
    fn rewrite_share(
        &self,
        entries: Vec<ShareEntry>,
        announce: Vec<Write>,
        now_ms: u64,
    ) -> BoxFuture<'_, BrokerResult<()>>;

    /// Records this node's heartbeat; true, recording nothing, when it is
    /// not registered (another node reaped it, or the broker lost its
    /// state): it registers again only through [`Broker::rewrite_share`],
    /// so no node ever reads its share missing.
    fn beat(&self, now_ms: u64) -> BoxFuture<'_, BrokerResult<bool>>;

    /// The registered nodes: (heartbeat at or after `cutoff_ms`, before).
    fn nodes(&self, cutoff_ms: u64) -> BoxFuture<'_, BrokerResult<(Vec<String>, Vec<String>)>>;

    /// Another node's presence share.
    fn share_of<'a>(&'a self, node: &'a str) -> BoxFuture<'a, BrokerResult<Vec<ShareEntry>>>;

    /// Claims the reaping of dead `node` (one winner per cluster for a
    /// minute); the winner's call also deletes the node's share and
    /// registration.
    fn reap<'a>(&'a self, node: &'a str) -> BoxFuture<'a, BrokerResult<bool>>;

    /// Leaves the cluster cleanly (shutdown): deletes this node's share and
    /// registration.
    fn leave(&self) -> BoxFuture<'_, BrokerResult<()>>;
}

/// The broker the `[cluster]` settings name, for node `node_id`.
pub fn from_settings(
    adapter: &str,
    url: &str,
    prefix: &str,
    node_id: &str,
) -> BrokerResult<Arc<dyn Broker>> {
    Ok(match adapter {
        "redis-cluster" => Arc::new(redis_cluster::RedisClusterBroker::new(
            url, prefix, node_id,
        )?),
        "nats" => Arc::new(nats::NatsBroker::new(url, prefix, node_id)),
        _ => Arc::new(redis::RedisBroker::new(url, prefix, node_id)?),
    })
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Splits a comma-separated list of URLs (Redis Cluster seeds, Sentinels).
pub fn url_list(urls: &str) -> Vec<String> {
    urls.split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(String::from)
        .collect()
}
