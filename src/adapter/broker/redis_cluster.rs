//! A Redis Cluster as the cluster's broker, over sharded pub/sub
//! (`SPUBLISH`/`SSUBSCRIBE`, Redis 7): each channel lives on the shard that
//! owns its slot, so publishing and subscribing spread over the masters
//! instead of every message going to every master as plain `PUBLISH` does
//! in a Redis Cluster. The state keys share the hash tag `{rs:{prefix}}`,
//! so they live on one slot and a pipeline may carry them together (they
//! are small: a hash per node and the heartbeat set).
//!
//! Ordering: a shard hands over its messages in order, so a channel's
//! events stay in order and presence deltas (all on `{prefix}#cluster`)
//! stay in order; events of different channels may interleave differently
//! with the presence deltas than they were published (unlike one Redis).
//!
//! The connection follows the cluster's topology (MOVED, failover) and
//! re-subscribes by itself; when one of its node connections drops, the
//! message stream ends, so the adapter resynchronises as after any outage.

use std::time::Duration;

use futures_util::StreamExt;
use futures_util::future::join_all;
use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::cluster_async::ClusterConnection;
use redis::{AsyncCommands, PushKind, Value};
use tokio::sync::Mutex;

use super::redis_state::{self, Keys};
use super::{
    Broker, BrokerResult, Messages, ShareEntry, Subscriber, Subscriptions, Write, url_list,
};
use crate::core::adapter::BoxFuture;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);

pub struct RedisClusterBroker {
    seeds: Vec<String>,
    keys: Keys,
    conn: Mutex<Option<ClusterConnection>>,
}

impl RedisClusterBroker {
    pub fn new(urls: &str, prefix: &str, node: &str) -> BrokerResult<Self> {
        let seeds = url_list(urls);
        if seeds.is_empty() {
            return Err("a Redis Cluster needs at least one seed node URL".into());
        }
        // Validates the URLs now rather than at the first connection.
        ClusterClient::new(seeds.clone())?;
        Ok(RedisClusterBroker {
            seeds,
            keys: Keys::new(format!("{{rs:{prefix}}}"), node),
            conn: Mutex::new(None),
        })
    }

    fn builder(&self) -> ClusterClientBuilder {
        ClusterClientBuilder::new(self.seeds.clone())
            .connection_timeout(CONNECT_TIMEOUT)
            .response_timeout(RESPONSE_TIMEOUT)
            .retries(2)
    }

    async fn conn(&self) -> BrokerResult<ClusterConnection> {
        let mut slot = self.conn.lock().await;
        if let Some(conn) = slot.as_ref() {
            return Ok(conn.clone());
        }
        let client = self.builder().build()?;
        let conn = tokio::time::timeout(CONNECT_TIMEOUT, client.get_async_connection())
            .await
            .map_err(|_| "connecting to the Redis Cluster timed out")??;
        *slot = Some(conn.clone());
        Ok(conn)
    }

    async fn checked<T>(&self, result: redis::RedisResult<T>) -> BrokerResult<T> {
        if result.is_err() {
            *self.conn.lock().await = None;
        }
        Ok(result?)
    }

    /// Sends `batch` as one pipeline per slot (the share writes all on the
    /// state slot, each channel's publishes on its own), the pipelines
    /// concurrently: a slot's commands keep their order.
    async fn send(&self, conn: &mut ClusterConnection, batch: &[Write]) -> redis::RedisResult<()> {
        let own = self.keys.own_share();
        let own_slot = slot(own.as_bytes());
        let mut pipes: Vec<(u16, redis::Pipeline)> = Vec::new();
        let mut pipe_for = |slot: u16| -> usize {
            match pipes.iter().position(|(s, _)| *s == slot) {
                Some(i) => i,
                None => {
                    pipes.push((slot, redis::pipe()));
                    pipes.len() - 1
                }
            }
        };
        let mut plan: Vec<(usize, &Write)> = Vec::with_capacity(batch.len());
        for write in batch {
            let s = match write {
                Write::Publish { channel, .. } => slot(channel.as_bytes()),
                _ => own_slot,
            };
            plan.push((pipe_for(s), write));
        }
        for (i, write) in plan {
            let pipe = &mut pipes[i].1;
            match write {
                Write::Publish { channel, payload } => {
                    pipe.cmd("SPUBLISH").arg(channel).arg(&payload[..]).ignore();
                }
                Write::SetMember { field, value } => {
                    pipe.hset(&own, field, value).ignore();
                }
                Write::DelMember { field } => {
                    pipe.hdel(&own, field).ignore();
                }
            }
        }
        let sends = pipes.iter().map(|(_, pipe)| {
            let mut c = conn.clone();
            async move { pipe.query_async::<()>(&mut c).await }
        });
        for result in join_all(sends).await {
            result?;
        }
        Ok(())
    }
}

/// The Redis Cluster slot of a key or sharded channel (CRC16 of its hash
/// tag, or of the whole name without one, modulo 16384).
fn slot(key: &[u8]) -> u16 {
    let tagged = key
        .iter()
        .position(|b| *b == b'{')
        .and_then(|open| {
            let rest = &key[open + 1..];
            let close = rest.iter().position(|b| *b == b'}')?;
            (close > 0).then(|| &rest[..close])
        })
        .unwrap_or(key);
    crc16::State::<crc16::XMODEM>::calculate(tagged) % 16384
}

struct ClusterSubscriptions(ClusterConnection);

/// Names grouped by slot: `SSUBSCRIBE` takes one slot's channels at a time.
fn by_slot<'a>(names: &[&'a str]) -> Vec<Vec<&'a str>> {
    let mut groups: Vec<(u16, Vec<&'a str>)> = Vec::new();
    for name in names {
        let s = slot(name.as_bytes());
        match groups.iter_mut().find(|(g, _)| *g == s) {
            Some((_, group)) => group.push(name),
            None => groups.push((s, vec![name])),
        }
    }
    groups.into_iter().map(|(_, group)| group).collect()
}

impl ClusterSubscriptions {
    /// (Un)subscribes every slot's group, the groups concurrently.
    async fn apply(&self, names: &[&str], subscribe: bool) -> BrokerResult<()> {
        let calls = by_slot(names).into_iter().map(|group| {
            let mut conn = self.0.clone();
            async move {
                if subscribe {
                    conn.ssubscribe(&group).await
                } else {
                    conn.sunsubscribe(&group).await
                }
            }
        });
        for result in join_all(calls).await {
            result?;
        }
        Ok(())
    }
}

impl Subscriptions for ClusterSubscriptions {
    fn subscribe<'a>(&'a mut self, names: &'a [&'a str]) -> BoxFuture<'a, BrokerResult<()>> {
        Box::pin(self.apply(names, true))
    }
    fn unsubscribe<'a>(&'a mut self, names: &'a [&'a str]) -> BoxFuture<'a, BrokerResult<()>> {
        Box::pin(self.apply(names, false))
    }
}

/// (channel, payload) of a sharded message push.
fn smessage(data: Vec<Value>) -> Option<(String, bytes::Bytes)> {
    let mut data = data.into_iter();
    let channel = match data.next()? {
        Value::BulkString(b) => String::from_utf8(b).ok()?,
        Value::SimpleString(s) => s,
        _ => return None,
    };
    let payload = match data.next()? {
        Value::BulkString(b) => bytes::Bytes::from(b),
        Value::SimpleString(s) => bytes::Bytes::from(s),
        _ => return None,
    };
    Some((channel, payload))
}

impl Broker for RedisClusterBroker {
    fn name(&self) -> &'static str {
        "redis-cluster"
    }

    fn subscriber(&self, fixed: Vec<String>) -> BoxFuture<'_, BrokerResult<Subscriber>> {
        Box::pin(async move {
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
            let client = self
                .builder()
                .use_protocol(redis::ProtocolVersion::RESP3)
                .push_sender(tx)
                .build()?;
            let conn = tokio::time::timeout(CONNECT_TIMEOUT, client.get_async_connection())
                .await
                .map_err(|_| "connecting to the Redis Cluster timed out")??;
            let subscriptions = ClusterSubscriptions(conn);
            let names: Vec<&str> = fixed.iter().map(String::as_str).collect();
            subscriptions.apply(&names, true).await?;
            let messages = tokio_stream_from(rx)
                .take_while(|push| std::future::ready(push.kind != PushKind::Disconnection))
                .filter_map(|push| {
                    std::future::ready(match push.kind {
                        PushKind::SMessage => smessage(push.data),
                        _ => None,
                    })
                });
            Ok((
                Box::new(subscriptions) as Box<dyn Subscriptions>,
                Box::pin(messages) as Messages,
            ))
        })
    }

    fn write<'a>(&'a self, batch: &'a [Write]) -> BoxFuture<'a, BrokerResult<()>> {
        Box::pin(async move {
            let mut conn = self.conn().await?;
            let result = self.send(&mut conn, batch).await;
            self.checked(result).await
        })
    }

    fn rewrite_share(
        &self,
        entries: Vec<ShareEntry>,
        announce: Vec<Write>,
        now_ms: u64,
    ) -> BoxFuture<'_, BrokerResult<()>> {
        Box::pin(async move {
            let own = self.keys.own_share();
            let mut conn = self.conn().await?;
            let result = async {
                let mut pipe = redis::pipe();
                pipe.del(&own).ignore();
                for (field, value) in &entries {
                    pipe.hset(&own, field, value).ignore();
                }
                pipe.query_async::<()>(&mut conn).await?;
                self.send(&mut conn, &announce).await?;
                conn.zadd::<_, _, _, ()>(self.keys.nodes(), self.keys.node(), now_ms)
                    .await
            }
            .await;
            self.checked(result).await
        })
    }

    fn beat(&self, now_ms: u64) -> BoxFuture<'_, BrokerResult<bool>> {
        Box::pin(async move {
            let mut c = self.conn().await?;
            let result = redis_state::beat(&mut c, &self.keys, now_ms).await;
            self.checked(result).await
        })
    }

    fn nodes(&self, cutoff_ms: u64) -> BoxFuture<'_, BrokerResult<(Vec<String>, Vec<String>)>> {
        Box::pin(async move {
            let mut c = self.conn().await?;
            let result = redis_state::nodes(&mut c, &self.keys, cutoff_ms).await;
            self.checked(result).await
        })
    }

    fn share_of<'a>(&'a self, node: &'a str) -> BoxFuture<'a, BrokerResult<Vec<ShareEntry>>> {
        Box::pin(async move {
            let mut c = self.conn().await?;
            let result = redis_state::share_of(&mut c, &self.keys, node).await;
            self.checked(result).await
        })
    }

    fn reap<'a>(&'a self, node: &'a str) -> BoxFuture<'a, BrokerResult<bool>> {
        Box::pin(async move {
            let mut c = self.conn().await?;
            let result = redis_state::reap(&mut c, &self.keys, node).await;
            self.checked(result).await
        })
    }

    fn leave(&self) -> BoxFuture<'_, BrokerResult<()>> {
        Box::pin(async move {
            let mut c = self.conn().await?;
            let result = redis_state::leave(&mut c, &self.keys).await;
            self.checked(result).await
        })
    }
}

/// The receiving half of an unbounded channel as a stream.
fn tokio_stream_from<T: Send + 'static>(
    mut rx: tokio::sync::mpsc::UnboundedReceiver<T>,
) -> impl futures_util::Stream<Item = T> + Send {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

#[cfg(test)]
mod tests {
    #[test]
    fn slots_match_redis() {
        // CLUSTER KEYSLOT answers, from a real Redis.
        assert_eq!(super::slot(b"foo"), 12182);
        assert_eq!(super::slot(b"{user1000}.following"), 3443);
        assert_eq!(super::slot(b"{user1000}.followers"), 3443);
        assert_eq!(super::slot(b"foo{}{bar}"), 8363);
    }
}
