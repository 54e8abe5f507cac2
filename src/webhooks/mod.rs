//! Webhooks: the app hears what happens on the server, as Pusher tells it.
//!
//! One subscriber of the node's happenings stream
//! ([`crate::core::happenings`]) takes the **cluster-wide** ones — each is
//! emitted on exactly one node of the cluster, so each webhook leaves the
//! cluster once — turns them into Pusher's event objects and queues them
//! on every target of their app that wants them (`[[apps.webhooks]]`:
//! event types, channel filter). Departures arrive already settled (held
//! 3 s, dropped with their come-back).
//!
//! Every target has its own bounded queue and its own sender task, so a
//! slow or dead target delays nobody: not the WebSocket fan-out (the
//! stream never waits for a subscriber), not the other targets. A sender
//! batches what is queued (events that come together share a request, in
//! the order they happened, so per channel too), signs the exact body
//! (`X-Pusher-Signature`, hex HMAC-SHA256 with the app secret) and retries
//! a failed request with exponential back-off for up to
//! [`RETRY_FOR`]; what falls out of a bound is counted (`dropped`) and
//! logged.

mod post;

use std::collections::VecDeque;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::{Relaxed, SeqCst};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hyper::header::{HeaderName, HeaderValue};
use parking_lot::Mutex;
use serde_json::json;
use tokio::sync::Notify;
use tokio::sync::broadcast::error::RecvError;

use crate::core::happenings::{ClusterWide, Happening, What};
use crate::core::hub::Hub;
use crate::core::node::Node;
use crate::core::webhook_target::WebhookTarget;

/// Events one target may have waiting; past it, new events are dropped.
pub const QUEUE_LIMIT: usize = 10_000;
/// Events in one request at most.
pub const BATCH_MAX: usize = 100;
/// How long a sender waits for more events once one is queued, so that
/// events that come together share a request.
pub const LINGER: Duration = Duration::from_millis(20);
/// How long a failing request is retried before its events are dropped.
pub const RETRY_FOR: Duration = Duration::from_secs(5 * 60);
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// One configured target of one app.
struct Target {
    hub: Arc<Hub>,
    config: WebhookTarget,
    url: hyper::Uri,
    headers: Vec<(HeaderName, HeaderValue)>,
    queue: Mutex<VecDeque<String>>,
    wake: Notify,
    /// Set when the app or the target went away: send what is queued, stop.
    retired: AtomicBool,
}

/// The webhook targets of one node's apps, kept in step with the live app
/// set (a reload or an apps-database change calls [`Webhooks::refresh`]).
pub struct Webhooks {
    node: Weak<Node>,
    targets: Mutex<Vec<Arc<Target>>>,
    /// Whether the dispatcher listens to the happenings stream (only once
    /// some app has a target: without one, happenings stay free).
    listening: AtomicBool,
}

/// Starts the webhook dispatcher and one sender per target (tracked by the
/// node), for the apps served now.
pub fn start(node: &Arc<Node>) -> Arc<Webhooks> {
    let webhooks = Arc::new(Webhooks {
        node: Arc::downgrade(node),
        targets: Mutex::new(Vec::new()),
        listening: AtomicBool::new(false),
    });
    let count = webhooks.refresh();
    if count > 0 {
        tracing::info!(targets = count, "webhooks on");
    }
    webhooks
}

impl Webhooks {
    /// Rebuilds the target list from the apps served now: an unchanged
    /// target keeps its queue; a new one gets a sender; a removed or changed
    /// one sends what it holds, then stops. Returns how many targets there
    /// are.
    pub fn refresh(self: &Arc<Self>) -> usize {
        let Some(node) = self.node.upgrade() else {
            return 0;
        };
        let mut targets = self.targets.lock();
        let mut next: Vec<Arc<Target>> = Vec::new();
        for hub in node.hubs().iter() {
            for config in &hub.app.webhooks {
                if let Some(kept) = targets
                    .iter()
                    .find(|t| Arc::ptr_eq(&t.hub, hub) && t.config == *config)
                {
                    next.push(kept.clone());
                    continue;
                }
                let Ok(url) = config.url.parse::<hyper::Uri>() else {
                    continue; // refused by config validation
                };
                let headers = config
                    .headers
                    .iter()
                    .filter_map(|(k, v)| {
                        Some((
                            HeaderName::from_bytes(k.as_bytes()).ok()?,
                            HeaderValue::from_str(v).ok()?,
                        ))
                    })
                    .collect();
                let target = Arc::new(Target {
                    hub: hub.clone(),
                    config: config.clone(),
                    url,
                    headers,
                    queue: Mutex::new(VecDeque::new()),
                    wake: Notify::new(),
                    retired: AtomicBool::new(false),
                });
                node.spawn(send_loop(target.clone()));
                next.push(target);
            }
        }
        for old in targets.iter() {
            if !next.iter().any(|t| Arc::ptr_eq(t, old)) {
                old.retired.store(true, SeqCst);
                old.wake.notify_one();
            }
        }
        *targets = next;
        let count = targets.len();
        drop(targets);
        if count > 0 && !self.listening.swap(true, SeqCst) {
            let rx = node.happenings().subscribe();
            node.spawn(dispatch(rx, self.clone()));
        }
        count
    }
}

/// Routes cluster-wide happenings to the targets that want them.
async fn dispatch(
    mut rx: tokio::sync::broadcast::Receiver<Arc<Happening>>,
    webhooks: Arc<Webhooks>,
) {
    loop {
        let happening = match rx.recv().await {
            Ok(h) => h,
            Err(RecvError::Lagged(n)) => {
                tracing::warn!(
                    missed = n,
                    "webhooks fell behind the happenings stream; events dropped"
                );
                for t in webhooks.targets.lock().iter() {
                    t.hub.stats.webhooks.dropped.fetch_add(n, Relaxed);
                }
                continue;
            }
            Err(RecvError::Closed) => return,
        };
        let What::Cluster(what) = &happening.what else {
            continue;
        };
        let (kind, channel) = kind_and_channel(what);
        let mut encoded: Option<String> = None;
        let targets = webhooks.targets.lock();
        for t in targets.iter().filter(|t| *t.hub.app_id() == happening.app) {
            if !t.config.wants(kind, channel) {
                continue;
            }
            let event = encoded.get_or_insert_with(|| encode(what)).clone();
            t.enqueue(event);
        }
    }
}

fn kind_and_channel(what: &ClusterWide) -> (&'static str, &str) {
    match what {
        ClusterWide::ChannelOccupied { channel } => ("channel_occupied", channel),
        ClusterWide::ChannelVacated { channel } => ("channel_vacated", channel),
        ClusterWide::MemberAdded { channel, .. } => ("member_added", channel),
        ClusterWide::MemberRemoved { channel, .. } => ("member_removed", channel),
        ClusterWide::ClientEvent { channel, .. } => ("client_event", channel),
        ClusterWide::CacheMiss { channel } => ("cache_miss", channel),
        ClusterWide::SubscriptionCount { channel, .. } => ("subscription_count", channel),
    }
}

/// The event object exactly as Pusher sends it.
pub fn encode(what: &ClusterWide) -> String {
    let (name, channel) = kind_and_channel(what);
    let value = match what {
        ClusterWide::ChannelOccupied { .. }
        | ClusterWide::ChannelVacated { .. }
        | ClusterWide::CacheMiss { .. } => json!({ "name": name, "channel": channel }),
        ClusterWide::MemberAdded { user_id, .. } | ClusterWide::MemberRemoved { user_id, .. } => {
            json!({ "name": name, "channel": channel, "user_id": &**user_id })
        }
        ClusterWide::ClientEvent {
            event,
            data,
            socket_id,
            user_id,
            ..
        } => {
            // Pusher carries event data as a string (JSON text when the
            // client sent an object).
            let data = serde_json::from_str::<String>(data.as_str())
                .unwrap_or_else(|_| data.as_str().to_string());
            let mut v = json!({
                "name": name,
                "channel": channel,
                "event": &**event,
                "data": data,
                "socket_id": socket_id.as_str(),
            });
            if let Some(user) = user_id {
                v["user_id"] = json!(&**user);
            }
            v
        }
        ClusterWide::SubscriptionCount { count, .. } => {
            json!({ "name": name, "channel": channel, "subscription_count": count })
        }
    };
    value.to_string()
}

impl Target {
    fn enqueue(&self, event: String) {
        let stats = &self.hub.stats.webhooks;
        {
            let mut queue = self.queue.lock();
            if queue.len() >= QUEUE_LIMIT {
                drop(queue);
                let dropped = stats.dropped.fetch_add(1, Relaxed) + 1;
                if dropped.is_power_of_two() {
                    tracing::warn!(url = %self.config.url, dropped, "webhook queue full; events dropped");
                }
                return;
            }
            queue.push_back(event);
        }
        stats.queued.fetch_add(1, Relaxed);
        self.wake.notify_one();
    }

    fn take_batch(&self) -> Vec<String> {
        let mut queue = self.queue.lock();
        let n = queue.len().min(BATCH_MAX);
        queue.drain(..n).collect()
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The request body: `{"time_ms": ..., "events": [...]}`.
pub fn body(time_ms: u64, events: &[String]) -> String {
    let mut body = format!("{{\"time_ms\":{time_ms},\"events\":[");
    for (i, e) in events.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push_str(e);
    }
    body.push_str("]}");
    body
}

/// The request's headers and body, signed now.
fn signed(target: &Target, events: &[String]) -> (Vec<(HeaderName, HeaderValue)>, bytes::Bytes) {
    let app = &target.hub.app;
    let body = body(now_ms(), events);
    let signature = crate::signing::hmac_sha256_hex(&app.secret, body.as_bytes());
    let mut headers = target.headers.clone();
    headers.extend([
        (
            HeaderName::from_static("x-pusher-key"),
            HeaderValue::from_str(&app.key).unwrap_or(HeaderValue::from_static("")),
        ),
        (
            HeaderName::from_static("x-pusher-signature"),
            HeaderValue::from_str(&signature).unwrap_or(HeaderValue::from_static("")),
        ),
    ]);
    (headers, bytes::Bytes::from(body))
}

/// Sends a target's queue, batch after batch, each retried until it is
/// delivered or [`RETRY_FOR`] has passed.
async fn send_loop(target: Arc<Target>) {
    let stats = &target.hub.stats.webhooks;
    loop {
        if target.queue.lock().is_empty() {
            if target.retired.load(SeqCst) {
                return;
            }
            target.wake.notified().await;
            tokio::time::sleep(LINGER).await;
        }
        let events = target.take_batch();
        if events.is_empty() {
            continue;
        }
        let n = events.len() as u64;
        let started = Instant::now();
        let mut backoff = FIRST_BACKOFF;
        loop {
            // Signed afresh on every attempt: validators refuse a
            // `time_ms` older than 5 minutes.
            let (headers, body) = signed(&target, &events);
            match post::post(&target.url, &headers, body).await {
                Ok(()) => {
                    stats.sent.fetch_add(n, Relaxed);
                    break;
                }
                Err(failure) => {
                    stats.failed.fetch_add(1, Relaxed);
                    if started.elapsed() + backoff > RETRY_FOR {
                        stats.dropped.fetch_add(n, Relaxed);
                        tracing::warn!(url = %target.config.url, events = n, error = %failure, "webhook failed for 5 minutes; its events are dropped");
                        break;
                    }
                    tracing::warn!(url = %target.config.url, events = n, error = %failure, retry_in_s = backoff.as_secs(), "webhook failed; retrying");
                    tokio::time::sleep(backoff).await;
                    stats.retried.fetch_add(1, Relaxed);
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
        stats.queued.fetch_sub(n, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::connection::SocketId;
    use crate::core::event::RawJson;

    #[test]
    fn events_are_encoded_as_pusher_sends_them() {
        let e = encode(&ClusterWide::MemberAdded {
            channel: "presence-a".into(),
            user_id: "7".into(),
        });
        assert_eq!(
            e,
            r#"{"channel":"presence-a","name":"member_added","user_id":"7"}"#
        );
        let e = encode(&ClusterWide::ClientEvent {
            channel: "private-a".into(),
            event: "client-typing".into(),
            data: RawJson::parse(r#"{"x":1}"#).unwrap(),
            socket_id: SocketId::from_raw("1.2"),
            user_id: None,
        });
        let v: serde_json::Value = serde_json::from_str(&e).unwrap();
        assert_eq!(v["data"], r#"{"x":1}"#);
        assert_eq!(v["socket_id"], "1.2");
        assert!(v.get("user_id").is_none());
        assert_eq!(body(5, &[e.clone(), e]).matches("client-typing").count(), 2);
        let v: serde_json::Value = serde_json::from_str(&body(5, &[])).unwrap();
        assert_eq!(v["time_ms"], 5);
    }
}
