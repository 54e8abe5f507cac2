//! [`Link`] over Redis pub/sub: one channel every node listens to
//! (`{prefix}:link`) and one per node (`{prefix}:link:{node}`). Its own
//! connections, so that a burst of forwarded chunks never delays the
//! adapter's fan-out and presence traffic. Bounded both ways: sends beyond
//! [`QUEUE`] waiting and incoming messages beyond [`QUEUE`] unread are
//! dropped (the waiting side times out).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use parking_lot::Mutex;
use redis::aio::MultiplexedConnection;
use tokio::sync::mpsc;

use crate::core::node::Node;
use crate::core::relay::Link;

/// Messages waiting to be published, and received but not yet read.
pub const QUEUE: usize = 4096;
const MAX_BACKOFF: Duration = Duration::from_secs(5);

pub struct RedisLink {
    id: String,
    prefix: String,
    out: mpsc::Sender<(String, Bytes)>,
    incoming: Mutex<Option<mpsc::Receiver<Bytes>>>,
}

impl RedisLink {
    /// Connects (in the background, retrying) to the cluster's Redis; the
    /// tasks are the node's.
    pub fn start(url: &str, prefix: &str, node: &Node) -> Arc<RedisLink> {
        let (out, queue) = mpsc::channel(QUEUE);
        let (deliver, incoming) = mpsc::channel(QUEUE);
        let link = Arc::new(RedisLink {
            id: format!("{:016x}", rand::random::<u64>()),
            prefix: prefix.to_owned(),
            out,
            incoming: Mutex::new(Some(incoming)),
        });
        node.spawn(writer(url.to_owned(), queue));
        node.spawn(subscriber(
            url.to_owned(),
            [link.channel(None), link.channel(Some(&link.id))],
            deliver,
        ));
        link
    }

    fn channel(&self, node: Option<&str>) -> String {
        match node {
            Some(node) => format!("{}:link:{node}", self.prefix),
            None => format!("{}:link", self.prefix),
        }
    }
}

impl Link for RedisLink {
    fn node_id(&self) -> &str {
        &self.id
    }

    fn send(&self, to: Option<&str>, payload: Bytes) {
        if self.out.try_send((self.channel(to), payload)).is_err() {
            tracing::debug!("cluster link queue full; a forwarded message was dropped");
        }
    }

    fn incoming(&self) -> Option<mpsc::Receiver<Bytes>> {
        self.incoming.lock().take()
    }
}

async fn connect(url: &str) -> redis::RedisResult<MultiplexedConnection> {
    let client = redis::Client::open(url)?;
    tokio::time::timeout(
        Duration::from_secs(5),
        client.get_multiplexed_async_connection(),
    )
    .await
    .map_err(|_| redis::RedisError::from((redis::ErrorKind::Io, "connect timed out")))?
}

/// Publishes queued messages, pipelined: one round trip per batch.
async fn writer(url: String, mut queue: mpsc::Receiver<(String, Bytes)>) {
    let mut conn: Option<MultiplexedConnection> = None;
    let mut batch = Vec::with_capacity(256);
    while queue.recv_many(&mut batch, 256).await > 0 {
        let mut pipe = redis::pipe();
        for (channel, payload) in &batch {
            pipe.publish(channel, &payload[..]).ignore();
        }
        for _ in 0..2 {
            if conn.is_none() {
                conn = connect(&url).await.ok();
            }
            let Some(c) = conn.as_mut() else { break };
            match pipe.query_async::<()>(c).await {
                Ok(()) => break,
                Err(e) => {
                    tracing::debug!(error = %e, "cluster link publish failed");
                    conn = None;
                }
            }
        }
        batch.clear();
    }
}

/// Delivers the messages of `channels`, resubscribing with back-off.
async fn subscriber(url: String, channels: [String; 2], deliver: mpsc::Sender<Bytes>) {
    let mut backoff = Duration::from_millis(200);
    loop {
        let subscribed = async {
            let client = redis::Client::open(url.as_str())?;
            let mut pubsub =
                tokio::time::timeout(Duration::from_secs(5), client.get_async_pubsub())
                    .await
                    .map_err(|_| {
                        redis::RedisError::from((redis::ErrorKind::Io, "connect timed out"))
                    })??;
            for channel in &channels {
                pubsub.subscribe(channel).await?;
            }
            Ok::<_, redis::RedisError>(pubsub)
        };
        match subscribed.await {
            Ok(pubsub) => {
                backoff = Duration::from_millis(200);
                let mut messages = pubsub.into_on_message();
                while let Some(msg) = messages.next().await {
                    let payload = Bytes::copy_from_slice(msg.get_payload_bytes());
                    if let Err(mpsc::error::TrySendError::Closed(_)) = deliver.try_send(payload) {
                        return;
                    }
                }
            }
            Err(e) => tracing::debug!(error = %e, "cluster link cannot subscribe"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}
