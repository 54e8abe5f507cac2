//! [`Link`] over any [`Broker`]: one channel every node listens to
//! (`{prefix}#link`) and one per node (`{prefix}#link#{node}`). Its own
//! subscription connection and writer, so that a burst of forwarded chunks
//! never delays the adapter's fan-out and presence traffic. Bounded both
//! ways: sends beyond [`QUEUE`] waiting and incoming messages beyond
//! [`QUEUE`] unread are dropped (the waiting side times out).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use parking_lot::Mutex;
use tokio::sync::mpsc;

use super::{Broker, Write};
use crate::core::node::Node;
use crate::core::relay::Link;

/// Messages waiting to be published, and received but not yet read.
pub const QUEUE: usize = 4096;
const MAX_BACKOFF: Duration = Duration::from_secs(5);

pub struct BrokerLink {
    id: String,
    prefix: String,
    out: mpsc::Sender<Write>,
    incoming: Mutex<Option<mpsc::Receiver<Bytes>>>,
}

impl BrokerLink {
    /// Connects (in the background, retrying) through `broker`; the tasks
    /// are the node's.
    pub fn start(broker: Arc<dyn Broker>, prefix: &str, node: &Node) -> Arc<BrokerLink> {
        let (out, queue) = mpsc::channel(QUEUE);
        let (deliver, incoming) = mpsc::channel(QUEUE);
        let link = Arc::new(BrokerLink {
            id: format!("{:016x}", rand::random::<u64>()),
            prefix: prefix.to_owned(),
            out,
            incoming: Mutex::new(Some(incoming)),
        });
        node.spawn(writer(broker.clone(), queue));
        node.spawn(subscriber(
            broker,
            vec![link.channel(None), link.channel(Some(&link.id))],
            deliver,
        ));
        link
    }

    fn channel(&self, node: Option<&str>) -> String {
        match node {
            Some(node) => format!("{}#link#{node}", self.prefix),
            None => format!("{}#link", self.prefix),
        }
    }
}

impl Link for BrokerLink {
    fn node_id(&self) -> &str {
        &self.id
    }

    fn send(&self, to: Option<&str>, payload: Bytes) {
        let write = Write::Publish {
            channel: self.channel(to),
            payload,
        };
        if self.out.try_send(write).is_err() {
            tracing::debug!("cluster link queue full; a forwarded message was dropped");
        }
    }

    fn incoming(&self) -> Option<mpsc::Receiver<Bytes>> {
        self.incoming.lock().take()
    }
}

/// Publishes queued messages in batches.
async fn writer(broker: Arc<dyn Broker>, mut queue: mpsc::Receiver<Write>) {
    let mut batch = Vec::with_capacity(256);
    while queue.recv_many(&mut batch, 256).await > 0 {
        for _ in 0..2 {
            match broker.write(&batch).await {
                Ok(()) => break,
                Err(e) => tracing::debug!(error = %e, "cluster link publish failed"),
            }
        }
        batch.clear();
    }
}

/// Delivers the messages of `channels`, resubscribing with back-off.
async fn subscriber(broker: Arc<dyn Broker>, channels: Vec<String>, deliver: mpsc::Sender<Bytes>) {
    let mut backoff = Duration::from_millis(200);
    loop {
        match broker.subscriber(channels.clone()).await {
            Ok((_subscriptions, mut messages)) => {
                backoff = Duration::from_millis(200);
                while let Some((_, payload)) = messages.next().await {
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
