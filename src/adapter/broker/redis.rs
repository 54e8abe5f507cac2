//! One Redis as the cluster's broker: `PUBLISH`/`SUBSCRIBE` on one
//! subscription connection (Redis hands its messages over in the order it
//! handled the publishes, whatever the channel, so a node's events stay
//! ordered with its presence deltas), pipelined writes, the presence share
//! in the hash `{prefix}#presence#{node}`, heartbeats in the sorted set
//! `{prefix}#nodes`, reap locks `{prefix}#reap#{node}` (`SET NX PX`).
//!
//! With `redis+sentinel://host:port[,host:port...]/service` the master is
//! asked of the Sentinels at every (re)connection, so after a failover the
//! node reconnects to the new master and resynchronises as after any
//! outage.

use std::time::Duration;

use futures_util::StreamExt;
use redis::aio::MultiplexedConnection;
use tokio::sync::Mutex;

use super::redis_state::{self, Keys};
use super::{Broker, BrokerResult, Messages, ShareEntry, Subscriber, Subscriptions, Write};
use crate::core::adapter::BoxFuture;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

enum Target {
    Direct(redis::Client),
    Sentinel(Mutex<redis::sentinel::SentinelClient>),
}

pub struct RedisBroker {
    target: Target,
    keys: Keys,
    /// The shared command connection (multiplexed), made on first use and
    /// dropped on an error so that the next call reconnects.
    conn: Mutex<Option<MultiplexedConnection>>,
}

/// Parses `redis+sentinel://s1:26379,s2:26379/service[/db]`.
fn sentinel(url: &str) -> BrokerResult<Option<redis::sentinel::SentinelClient>> {
    let Some(rest) = url.strip_prefix("redis+sentinel://") else {
        return Ok(None);
    };
    let (hosts, path) = rest
        .split_once('/')
        .ok_or("a Sentinel URL names the service: redis+sentinel://host:port,host:port/service")?;
    let mut path = path.split('/');
    let service = path
        .next()
        .filter(|s| !s.is_empty())
        .ok_or("a Sentinel URL names the service: redis+sentinel://host:port,host:port/service")?;
    let sentinels: Vec<String> = hosts
        .split(',')
        .filter(|h| !h.is_empty())
        .map(|h| format!("redis://{h}"))
        .collect();
    let mut info = redis::sentinel::SentinelNodeConnectionInfo::default();
    if let Some(db) = path.next().and_then(|d| d.parse::<i64>().ok()) {
        info = info.set_redis_connection_info(redis::RedisConnectionInfo::default().set_db(db));
    }
    Ok(Some(redis::sentinel::SentinelClient::build(
        sentinels,
        service,
        Some(info),
        redis::sentinel::SentinelServerType::Master,
    )?))
}

/// A client for `url`'s Redis: the URL itself, or the master the
/// Sentinels name for a `redis+sentinel://` URL (Laravel ingestion uses it
/// too).
pub async fn client_for(url: &str) -> BrokerResult<redis::Client> {
    match sentinel(url)? {
        Some(mut sentinel) => Ok(tokio::time::timeout(
            CONNECT_TIMEOUT,
            sentinel.async_get_client(),
        )
        .await
        .map_err(|_| "the Sentinels did not answer in time")??),
        None => Ok(redis::Client::open(url)?),
    }
}

impl RedisBroker {
    pub fn new(url: &str, prefix: &str, node: &str) -> BrokerResult<Self> {
        let target = match sentinel(url)? {
            Some(client) => Target::Sentinel(Mutex::new(client)),
            None => Target::Direct(redis::Client::open(url)?),
        };
        Ok(RedisBroker {
            target,
            keys: Keys::new(prefix.to_owned(), node),
            conn: Mutex::new(None),
        })
    }

    /// A client for the current master.
    async fn client(&self) -> BrokerResult<redis::Client> {
        match &self.target {
            Target::Direct(client) => Ok(client.clone()),
            Target::Sentinel(sentinel) => {
                let mut sentinel = sentinel.lock().await;
                Ok(
                    tokio::time::timeout(CONNECT_TIMEOUT, sentinel.async_get_client())
                        .await
                        .map_err(|_| "the Sentinels did not answer in time")??,
                )
            }
        }
    }

    async fn conn(&self) -> BrokerResult<MultiplexedConnection> {
        let mut slot = self.conn.lock().await;
        if let Some(conn) = slot.as_ref() {
            return Ok(conn.clone());
        }
        let client = self.client().await?;
        let conn = tokio::time::timeout(CONNECT_TIMEOUT, client.get_multiplexed_async_connection())
            .await
            .map_err(|_| "connecting to Redis timed out")??;
        *slot = Some(conn.clone());
        Ok(conn)
    }

    /// Passes a command's result on; an error drops the connection, so
    /// that the next call reconnects.
    async fn checked<T>(&self, result: redis::RedisResult<T>) -> BrokerResult<T> {
        if result.is_err() {
            *self.conn.lock().await = None;
        }
        Ok(result?)
    }

    fn pipe_writes(&self, pipe: &mut redis::Pipeline, batch: &[Write]) {
        let own = self.keys.own_share();
        for write in batch {
            match write {
                Write::Publish { channel, payload } => pipe.publish(channel, &payload[..]).ignore(),
                Write::SetMember { field, value } => pipe.hset(&own, field, value).ignore(),
                Write::DelMember { field } => pipe.hdel(&own, field).ignore(),
            };
        }
    }
}

struct RedisSubscriptions(redis::aio::PubSubSink);

impl Subscriptions for RedisSubscriptions {
    fn subscribe<'a>(&'a mut self, names: &'a [&'a str]) -> BoxFuture<'a, BrokerResult<()>> {
        Box::pin(async move { Ok(self.0.subscribe(names).await?) })
    }
    fn unsubscribe<'a>(&'a mut self, names: &'a [&'a str]) -> BoxFuture<'a, BrokerResult<()>> {
        Box::pin(async move { Ok(self.0.unsubscribe(names).await?) })
    }
}

impl Broker for RedisBroker {
    fn name(&self) -> &'static str {
        "redis"
    }

    fn subscriber(&self, fixed: Vec<String>) -> BoxFuture<'_, BrokerResult<Subscriber>> {
        Box::pin(async move {
            let client = self.client().await?;
            let mut pubsub = tokio::time::timeout(CONNECT_TIMEOUT, client.get_async_pubsub())
                .await
                .map_err(|_| "connecting to Redis timed out")??;
            for channel in &fixed {
                pubsub.subscribe(channel).await?;
            }
            let (sink, stream) = pubsub.split();
            let messages: Messages = Box::pin(stream.map(|msg| {
                (
                    msg.get_channel_name().to_owned(),
                    bytes::Bytes::copy_from_slice(msg.get_payload_bytes()),
                )
            }));
            Ok((
                Box::new(RedisSubscriptions(sink)) as Box<dyn Subscriptions>,
                messages,
            ))
        })
    }

    fn write<'a>(&'a self, batch: &'a [Write]) -> BoxFuture<'a, BrokerResult<()>> {
        Box::pin(async move {
            let mut pipe = redis::pipe();
            self.pipe_writes(&mut pipe, batch);
            let mut c = self.conn().await?;
            let result = pipe.query_async::<()>(&mut c).await;
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
            let mut pipe = redis::pipe();
            pipe.del(&own).ignore();
            for (field, value) in &entries {
                pipe.hset(&own, field, value).ignore();
            }
            self.pipe_writes(&mut pipe, &announce);
            pipe.zadd(self.keys.nodes(), self.keys.node(), now_ms)
                .ignore();
            let mut c = self.conn().await?;
            let result = pipe.query_async::<()>(&mut c).await;
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
