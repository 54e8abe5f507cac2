//! NATS as the cluster's broker: core NATS pub/sub with a subject per
//! channel, and JetStream key-value buckets for the small shared state.
//!
//! - **Subjects**: the adapter's name `{prefix}#ch#{app}#{channel}` becomes
//!   `{prefix}.ch.{app}.{channel}`, each part one subject token (`.`, `*`,
//!   `>`, `%`, spaces and non-ASCII escaped as `%XX`), so a channel name
//!   never splits into several tokens or turns into a wildcard.
//! - **Ordering**: NATS keeps one publisher's messages in order per
//!   subject; presence deltas all travel on `{prefix}.cluster`, so they stay
//!   ordered; a channel's events stay ordered.
//! - **State**: buckets `{prefix}_presence` (a key `{node}.{field in hex}`
//!   per membership), `{prefix}_nodes` (heartbeats) and `{prefix}_reap`
//!   (reap locks, `create` wins once, entries expire after a minute).
//!   JetStream rather than a Redis beside NATS: users who run NATS need
//!   nothing else (see the README, Scaling out, for the measured cost).
//! - **Outages**: the subscription connection's message stream ends when
//!   the client reports a disconnection; the adapter reconnects and
//!   resynchronises as with Redis.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use async_nats::jetstream::{self, kv};
use bytes::Bytes;
use futures_util::stream::SelectAll;
use futures_util::{Stream, StreamExt};
use parking_lot::Mutex;
use tokio::sync::{Mutex as AsyncMutex, oneshot};

use super::{Broker, BrokerResult, Messages, ShareEntry, Subscriber, Subscriptions, Write};
use crate::core::adapter::BoxFuture;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest wait for a bucket listing.
const READ_TIMEOUT: Duration = Duration::from_secs(5);
const REAP_LOCK: Duration = Duration::from_secs(60);
/// Share writes in flight at once when a node rewrites its share.
const PARALLEL_PUTS: usize = 256;

/// Escapes one subject token (see the module docs).
pub fn token(part: &str) -> String {
    if part.is_empty() {
        return "%".into();
    }
    let mut out = String::with_capacity(part.len());
    for b in part.bytes() {
        if b.is_ascii_graphic() && !matches!(b, b'.' | b'*' | b'>' | b'%') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Reverses [`token`].
pub fn untoken(token: &str) -> Option<String> {
    if token == "%" {
        return Some(String::new());
    }
    let bytes = token.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = token.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The subject of an adapter channel name (`#`-separated parts).
pub fn subject(name: &str) -> String {
    name.split('#').map(token).collect::<Vec<_>>().join(".")
}

/// The adapter channel name of a subject.
pub fn name_of(subject: &str) -> Option<String> {
    subject
        .split('.')
        .map(untoken)
        .collect::<Option<Vec<_>>>()
        .map(|parts| parts.join("#"))
}

/// A bucket name from the cluster prefix (`[A-Za-z0-9_-]` only).
fn bucket(prefix: &str, what: &str) -> String {
    let clean: String = prefix
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{clean}_{what}")
}

fn hex(text: &str) -> String {
    text.bytes().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<String> {
    let bytes = (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect::<Option<Vec<u8>>>()?;
    String::from_utf8(bytes).ok()
}

#[derive(Clone)]
struct Stores {
    client: async_nats::Client,
    presence: kv::Store,
    nodes: kv::Store,
    reap: kv::Store,
}

pub struct NatsBroker {
    url: String,
    prefix: String,
    node: String,
    stores: AsyncMutex<Option<Stores>>,
}

async fn connect(url: &str) -> BrokerResult<async_nats::Client> {
    connect_with(url, async_nats::ConnectOptions::new()).await
}

async fn connect_with(
    url: &str,
    options: async_nats::ConnectOptions,
) -> BrokerResult<async_nats::Client> {
    let options = options
        .connection_timeout(CONNECT_TIMEOUT)
        .name("resonance");
    Ok(tokio::time::timeout(CONNECT_TIMEOUT, options.connect(url))
        .await
        .map_err(|_| "connecting to NATS timed out")??)
}

async fn store(
    js: &jetstream::Context,
    name: String,
    max_age: Duration,
) -> BrokerResult<kv::Store> {
    if let Ok(store) = js.get_key_value(name.as_str()).await {
        return Ok(store);
    }
    // The bucket's stream, made as `create_key_value` would make it; made
    // here because that call first reads the account info, whose shape
    // changed after nats-server 2.9 (Debian 12's).
    js.get_or_create_stream(jetstream::stream::Config {
        name: format!("KV_{name}"),
        subjects: vec![format!("$KV.{name}.>")],
        max_messages_per_subject: 1,
        max_age,
        allow_rollup: true,
        deny_delete: true,
        allow_direct: true,
        discard: jetstream::stream::DiscardPolicy::New,
        num_replicas: 1,
        ..Default::default()
    })
    .await?;
    Ok(js.get_key_value(name.as_str()).await?)
}

impl NatsBroker {
    pub fn new(url: &str, prefix: &str, node: &str) -> Self {
        NatsBroker {
            url: url.to_owned(),
            prefix: prefix.to_owned(),
            node: node.to_owned(),
            stores: AsyncMutex::new(None),
        }
    }

    /// The client and buckets, connected (and the buckets made) on first
    /// use; forgotten after an error so the next call starts afresh.
    async fn stores(&self) -> BrokerResult<Stores> {
        let mut slot = self.stores.lock().await;
        if let Some(stores) = slot.as_ref() {
            return Ok(stores.clone());
        }
        let client = connect(&self.url).await?;
        let js = jetstream::new(client.clone());
        let stores = Stores {
            presence: store(&js, bucket(&self.prefix, "presence"), Duration::ZERO).await?,
            nodes: store(&js, bucket(&self.prefix, "nodes"), Duration::ZERO).await?,
            reap: store(&js, bucket(&self.prefix, "reap"), REAP_LOCK).await?,
            client,
        };
        *slot = Some(stores.clone());
        Ok(stores)
    }

    async fn checked<T>(&self, result: BrokerResult<T>) -> BrokerResult<T> {
        if result.is_err() {
            *self.stores.lock().await = None;
        }
        result
    }

    fn share_key(&self, node: &str, field: &str) -> String {
        format!("{node}.{}", hex(field))
    }

    async fn send(&self, stores: &Stores, batch: &[Write]) -> BrokerResult<()> {
        let mut puts = Vec::new();
        for write in batch {
            match write {
                Write::Publish { channel, payload } => {
                    let published = stores
                        .client
                        .publish(subject(channel), payload.clone())
                        .await;
                    match published {
                        Ok(()) => {}
                        // Too big for this server's max_payload: this one
                        // message is lost, not the batch (a retry would
                        // repeat what was sent).
                        Err(e)
                            if e.kind()
                                == async_nats::client::PublishErrorKind::MaxPayloadExceeded =>
                        {
                            tracing::warn!(
                                channel,
                                bytes = payload.len(),
                                max_payload = stores.client.server_info().max_payload,
                                "a cluster message exceeds NATS's max_payload and was dropped; raise max_payload in nats-server"
                            );
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
                Write::SetMember { field, value } => {
                    let (store, key) = (&stores.presence, self.share_key(&self.node, field));
                    let value = Bytes::from(value.clone());
                    puts.push(Box::pin(async move {
                        store.put(key, value).await.map(drop).map_err(Into::into)
                    }) as BoxFuture<'_, BrokerResult<()>>);
                }
                Write::DelMember { field } => {
                    let (store, key) = (&stores.presence, self.share_key(&self.node, field));
                    puts.push(Box::pin(async move {
                        store.delete(key).await.map_err(Into::into)
                    }));
                }
            }
        }
        for result in futures_util::future::join_all(puts).await {
            result?;
        }
        Ok(())
    }

    /// Every live (key, value) of `store` under `filter` (`>` for all).
    async fn read(
        client: &async_nats::Client,
        store: &kv::Store,
        filter: &str,
    ) -> BrokerResult<Vec<(String, Bytes)>> {
        let consumer = store
            .stream
            .create_consumer(jetstream::consumer::push::OrderedConfig {
                deliver_subject: client.new_inbox(),
                filter_subject: format!("{}{filter}", store.prefix),
                replay_policy: jetstream::consumer::ReplayPolicy::Instant,
                deliver_policy: jetstream::consumer::DeliverPolicy::LastPerSubject,
                ..Default::default()
            })
            .await?;
        let mut out = Vec::new();
        if consumer.cached_info().num_pending == 0 {
            return Ok(out);
        }
        let mut messages = consumer.messages().await?;
        let deadline = tokio::time::Instant::now() + READ_TIMEOUT;
        loop {
            let message = tokio::time::timeout_at(deadline, messages.next())
                .await
                .map_err(|_| "reading a NATS bucket timed out")?
                .ok_or("the NATS bucket listing ended early")??;
            let pending = message.info()?.pending;
            let deleted = message
                .headers
                .as_ref()
                .and_then(|h| h.get("KV-Operation"))
                .is_some_and(|op| op.as_str() != "PUT");
            if !deleted && let Some(key) = message.subject.strip_prefix(store.prefix.as_str()) {
                out.push((key.to_owned(), message.payload.clone()));
            }
            if pending == 0 {
                return Ok(out);
            }
        }
    }

    async fn purge_share(&self, stores: &Stores, node: &str) -> BrokerResult<()> {
        stores
            .presence
            .stream
            .purge()
            .filter(format!("{}{node}.>", stores.presence.prefix))
            .await?;
        Ok(())
    }

    async fn nodes_in(stores: &Stores, cutoff_ms: u64) -> BrokerResult<(Vec<String>, Vec<String>)> {
        let (mut alive, mut dead) = (Vec::new(), Vec::new());
        for (node, beat) in Self::read(&stores.client, &stores.nodes, ">").await? {
            let beat: u64 = std::str::from_utf8(&beat)
                .ok()
                .and_then(|b| b.parse().ok())
                .unwrap_or(0);
            if beat >= cutoff_ms {
                alive.push(node);
            } else {
                dead.push(node);
            }
        }
        Ok((alive, dead))
    }
}

/// The subscriptions of one connection merged into one stream; ends when
/// the connection reports a disconnection.
#[derive(Default)]
struct Merged {
    streams: SelectAll<Pin<Box<dyn Stream<Item = Incoming> + Send>>>,
    waker: Option<Waker>,
    lost: bool,
}

type Incoming = (String, Bytes);

struct NatsSubscriptions {
    client: async_nats::Client,
    merged: Arc<Mutex<Merged>>,
    /// Cancels a subject's subscription (dropping it unsubscribes).
    cancel: std::collections::HashMap<String, oneshot::Sender<()>>,
}

impl NatsSubscriptions {
    async fn add(&mut self, name: &str) -> BrokerResult<()> {
        if self.cancel.contains_key(name) {
            return Ok(());
        }
        let subscription = self.client.subscribe(subject(name)).await?;
        let (stop, stopped) = oneshot::channel::<()>();
        let name_owned = name.to_owned();
        let stream = subscription
            .map(move |msg| (name_owned.clone(), msg.payload))
            .take_until(stopped);
        self.cancel.insert(name.to_owned(), stop);
        let mut merged = self.merged.lock();
        merged.streams.push(Box::pin(stream));
        if let Some(waker) = merged.waker.take() {
            waker.wake();
        }
        Ok(())
    }
}

impl NatsSubscriptions {
    /// Waits until the server has processed what this connection sent so
    /// far (the SUBs): NATS does not acknowledge a SUB, and the client's
    /// `flush` only empties its own buffer, so a request to a subject
    /// nobody serves makes the round trip — the server answers "no
    /// responders" after handling everything before it.
    async fn acknowledged(&self) -> BrokerResult<()> {
        let probe = format!(
            "_RESONANCE.ack.{}",
            self.client.new_inbox().replace('.', "-")
        );
        match self.client.request(probe, Bytes::new()).await {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == async_nats::client::RequestErrorKind::NoResponders => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

impl Subscriptions for NatsSubscriptions {
    fn subscribe<'a>(&'a mut self, names: &'a [&'a str]) -> BoxFuture<'a, BrokerResult<()>> {
        Box::pin(async move {
            for name in names {
                self.add(name).await?;
            }
            self.acknowledged().await
        })
    }
    fn unsubscribe<'a>(&'a mut self, names: &'a [&'a str]) -> BoxFuture<'a, BrokerResult<()>> {
        Box::pin(async move {
            for name in names {
                if let Some(stop) = self.cancel.remove(*name) {
                    let _ = stop.send(());
                }
            }
            Ok(())
        })
    }
}

struct MergedStream(Arc<Mutex<Merged>>);

impl Stream for MergedStream {
    type Item = Incoming;
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Incoming>> {
        let mut merged = self.0.lock();
        if merged.lost {
            return Poll::Ready(None);
        }
        match merged.streams.poll_next_unpin(cx) {
            Poll::Ready(Some(item)) => Poll::Ready(Some(item)),
            // Empty, or every stream pending: wait for one, a new
            // subscription or the loss of the connection.
            _ => {
                merged.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

impl Broker for NatsBroker {
    fn name(&self) -> &'static str {
        "nats"
    }

    fn subscriber(&self, fixed: Vec<String>) -> BoxFuture<'_, BrokerResult<Subscriber>> {
        Box::pin(async move {
            let merged = Arc::new(Mutex::new(Merged::default()));
            let watch = Arc::downgrade(&merged);
            let options = async_nats::ConnectOptions::new().event_callback(move |event| {
                let watch = watch.clone();
                async move {
                    if matches!(
                        event,
                        async_nats::Event::Disconnected | async_nats::Event::Closed
                    ) && let Some(merged) = watch.upgrade()
                    {
                        let mut merged = merged.lock();
                        merged.lost = true;
                        if let Some(waker) = merged.waker.take() {
                            waker.wake();
                        }
                    }
                }
            });
            let client = connect_with(&self.url, options).await?;
            let mut subscriptions = NatsSubscriptions {
                client,
                merged: merged.clone(),
                cancel: std::collections::HashMap::new(),
            };
            let names: Vec<&str> = fixed.iter().map(String::as_str).collect();
            subscriptions.subscribe(&names).await?;
            Ok((
                Box::new(subscriptions) as Box<dyn Subscriptions>,
                Box::pin(MergedStream(merged)) as Messages,
            ))
        })
    }

    fn write<'a>(&'a self, batch: &'a [Write]) -> BoxFuture<'a, BrokerResult<()>> {
        Box::pin(async move {
            let stores = self.stores().await?;
            let result = self.send(&stores, batch).await;
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
            let stores = self.stores().await?;
            let result = async {
                self.purge_share(&stores, &self.node).await?;
                let writes: Vec<Write> = entries
                    .into_iter()
                    .map(|(field, value)| Write::SetMember { field, value })
                    .collect();
                for chunk in writes.chunks(PARALLEL_PUTS) {
                    self.send(&stores, chunk).await?;
                }
                self.send(&stores, &announce).await?;
                stores
                    .nodes
                    .put(&self.node, Bytes::from(now_ms.to_string()))
                    .await?;
                Ok(())
            }
            .await;
            self.checked(result).await
        })
    }

    fn beat(&self, now_ms: u64) -> BoxFuture<'_, BrokerResult<bool>> {
        Box::pin(async move {
            let stores = self.stores().await?;
            let result = async {
                if stores.nodes.get(&self.node).await?.is_none() {
                    return Ok(true);
                }
                stores
                    .nodes
                    .put(&self.node, Bytes::from(now_ms.to_string()))
                    .await?;
                Ok(false)
            }
            .await;
            self.checked(result).await
        })
    }

    fn nodes(&self, cutoff_ms: u64) -> BoxFuture<'_, BrokerResult<(Vec<String>, Vec<String>)>> {
        Box::pin(async move {
            let stores = self.stores().await?;
            let result = Self::nodes_in(&stores, cutoff_ms).await;
            self.checked(result).await
        })
    }

    fn share_of<'a>(&'a self, node: &'a str) -> BoxFuture<'a, BrokerResult<Vec<ShareEntry>>> {
        Box::pin(async move {
            let stores = self.stores().await?;
            let result = Self::read(&stores.client, &stores.presence, &format!("{node}.>")).await;
            let entries = self.checked(result).await?;
            Ok(entries
                .into_iter()
                .filter_map(|(key, value)| {
                    let field = unhex(key.split_once('.')?.1)?;
                    Some((field, String::from_utf8(value.to_vec()).ok()?))
                })
                .collect())
        })
    }

    fn reap<'a>(&'a self, node: &'a str) -> BoxFuture<'a, BrokerResult<bool>> {
        Box::pin(async move {
            let stores = self.stores().await?;
            let result = async {
                match stores
                    .reap
                    .create(node, Bytes::from(self.node.clone()))
                    .await
                {
                    Ok(_) => {}
                    Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => return Ok(false),
                    Err(e) => return Err(e.into()),
                }
                self.purge_share(&stores, node).await?;
                stores.nodes.purge(node).await?;
                Ok(true)
            }
            .await;
            self.checked(result).await
        })
    }

    fn leave(&self) -> BoxFuture<'_, BrokerResult<()>> {
        Box::pin(async move {
            let stores = self.stores().await?;
            let result = async {
                self.purge_share(&stores, &self.node).await?;
                stores.nodes.purge(&self.node).await?;
                Ok(())
            }
            .await;
            self.checked(result).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_round_trip() {
        for name in [
            "resonance#cluster",
            "resonance#ch#app-1#private-chat.room.1",
            "pre fix#ch#a*b#>x%y",
            "p#ch#ünï#presence-x",
        ] {
            let s = subject(name);
            assert!(!s.contains(['*', '>', ' ']), "{s}");
            assert_eq!(s.split('.').count(), name.split('#').count(), "{s}");
            assert_eq!(name_of(&s).as_deref(), Some(name));
        }
    }

    #[test]
    fn share_keys_round_trip() {
        let field = "app\u{1}presence-room.1\u{1}user 7";
        assert_eq!(unhex(&hex(field)).as_deref(), Some(field));
        assert_eq!(bucket("my.prefix", "nodes"), "my_prefix_nodes");
    }
}
