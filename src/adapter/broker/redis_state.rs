//! The cluster's shared state as Redis keys, for both Redis brokers (one
//! Redis and a Redis Cluster, whose keys share one hash tag): each node's
//! presence share in a hash, heartbeats in a sorted set, reap locks with
//! `SET NX PX`. Generic over the connection, so both brokers run the same
//! commands.

use redis::aio::ConnectionLike;
use redis::{AsyncCommands, RedisResult};

use super::ShareEntry;

/// How long the winner of a reap keeps its lock.
const REAP_LOCK_MS: u64 = 60_000;

/// The state keys of one cluster (`base` is `{prefix}`, or a hash-tagged
/// form of it on a Redis Cluster) as seen by node `node`.
pub struct Keys {
    base: String,
    node: String,
}

impl Keys {
    pub fn new(base: String, node: &str) -> Keys {
        Keys {
            base,
            node: node.to_owned(),
        }
    }
    pub fn node(&self) -> &str {
        &self.node
    }
    pub fn nodes(&self) -> String {
        format!("{}#nodes", self.base)
    }
    pub fn share(&self, node: &str) -> String {
        format!("{}#presence#{node}", self.base)
    }
    pub fn own_share(&self) -> String {
        self.share(&self.node)
    }
    fn reap_lock(&self, node: &str) -> String {
        format!("{}#reap#{node}", self.base)
    }
}

/// Records the heartbeat of a registered node; true (and nothing
/// recorded) when the node is not registered: it registers again only
/// through a rewrite of its share, never with its share missing.
pub async fn beat<C: ConnectionLike + Send + Sync>(
    c: &mut C,
    keys: &Keys,
    now_ms: u64,
) -> RedisResult<bool> {
    let (score, _): (Option<f64>, i64) = redis::pipe()
        .zscore(keys.nodes(), keys.node())
        .cmd("ZADD")
        .arg(keys.nodes())
        .arg("XX")
        .arg(now_ms)
        .arg(keys.node())
        .query_async(c)
        .await?;
    Ok(score.is_none())
}

/// (heartbeat at or after `cutoff_ms`, before it).
pub async fn nodes<C: ConnectionLike + Send + Sync>(
    c: &mut C,
    keys: &Keys,
    cutoff_ms: u64,
) -> RedisResult<(Vec<String>, Vec<String>)> {
    let alive: Vec<String> = c.zrangebyscore(keys.nodes(), cutoff_ms, "+inf").await?;
    let dead: Vec<String> = c
        .zrangebyscore(keys.nodes(), "-inf", format!("({cutoff_ms}"))
        .await?;
    Ok((alive, dead))
}

pub async fn share_of<C: ConnectionLike + Send + Sync>(
    c: &mut C,
    keys: &Keys,
    node: &str,
) -> RedisResult<Vec<ShareEntry>> {
    c.hgetall(keys.share(node)).await
}

/// One winner per dead node for a minute; the winner deletes its share
/// and registration.
pub async fn reap<C: ConnectionLike + Send + Sync>(
    c: &mut C,
    keys: &Keys,
    node: &str,
) -> RedisResult<bool> {
    let won: Option<String> = redis::cmd("SET")
        .arg(keys.reap_lock(node))
        .arg(keys.node())
        .arg("NX")
        .arg("PX")
        .arg(REAP_LOCK_MS)
        .query_async(c)
        .await?;
    if won.is_some() {
        let _: () = c.del(keys.share(node)).await?;
        let _: () = c.zrem(keys.nodes(), node).await?;
    }
    Ok(won.is_some())
}

/// Deletes this node's share and registration.
pub async fn leave<C: ConnectionLike + Send + Sync>(c: &mut C, keys: &Keys) -> RedisResult<()> {
    let _: () = c.del(keys.own_share()).await?;
    c.zrem(keys.nodes(), keys.node()).await
}
