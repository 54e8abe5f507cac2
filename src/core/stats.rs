//! Per-app counters, kept as plain atomics so that they are cheap enough to
//! leave on: a fan-out adds its totals once, not once per recipient.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering::Relaxed};

use parking_lot::Mutex;

/// Counters of one app on this node; rendered by `crate::metrics`.
#[derive(Default)]
pub struct AppStats {
    pub connections: AtomicU64,
    pub connections_total: AtomicU64,
    pub subscriptions: AtomicU64,
    pub messages_in: AtomicU64,
    pub bytes_in: AtomicU64,
    pub messages_out: AtomicU64,
    pub bytes_out: AtomicU64,
    pub api_calls: AtomicU64,
    /// Redis ingestion: 0 = not configured, 1 = connected, 2 = disconnected.
    pub ingress: AtomicU8,
    /// Refusals and errors by kind (rare, so a mutex is fine).
    errors: Mutex<BTreeMap<&'static str, u64>>,
    /// Webhooks of this app sent by this node.
    pub webhooks: WebhookStats,
}

/// Webhook delivery counters (events, except `failed` and `retried`,
/// which count requests).
#[derive(Default)]
pub struct WebhookStats {
    /// Events delivered (2xx).
    pub sent: AtomicU64,
    /// Requests that failed (non-2xx, timeout, refused).
    pub failed: AtomicU64,
    /// Requests sent again after a failure.
    pub retried: AtomicU64,
    /// Events dropped: queue full, stream lag, or retries past 5 minutes.
    pub dropped: AtomicU64,
    /// Events waiting to be sent, all targets.
    pub queued: AtomicU64,
}

impl AppStats {
    pub fn connected(&self) {
        self.connections.fetch_add(1, Relaxed);
        self.connections_total.fetch_add(1, Relaxed);
    }
    pub fn disconnected(&self) {
        self.connections.fetch_sub(1, Relaxed);
    }
    pub fn subscribed(&self) {
        self.subscriptions.fetch_add(1, Relaxed);
    }
    pub fn unsubscribed(&self) {
        self.subscriptions.fetch_sub(1, Relaxed);
    }
    pub fn received(&self, bytes: usize) {
        self.messages_in.fetch_add(1, Relaxed);
        self.bytes_in.fetch_add(bytes as u64, Relaxed);
    }
    pub fn delivered(&self, messages: usize, bytes: usize) {
        if messages > 0 {
            self.messages_out.fetch_add(messages as u64, Relaxed);
            self.bytes_out.fetch_add(bytes as u64, Relaxed);
        }
    }
    pub fn api_call(&self) {
        self.api_calls.fetch_add(1, Relaxed);
    }
    /// Records whether the Redis ingestion is connected.
    pub fn set_ingress_connected(&self, connected: bool) {
        self.ingress.store(if connected { 1 } else { 2 }, Relaxed);
    }
    /// True only while a configured Redis ingestion is connected.
    pub fn ingress_connected(&self) -> bool {
        self.ingress.load(Relaxed) == 1
    }
    /// Counts an error or refusal of the given kind (a short snake_case tag).
    pub fn error(&self, kind: &'static str) {
        *self.errors.lock().entry(kind).or_default() += 1;
    }
    pub fn errors(&self) -> Vec<(&'static str, u64)> {
        self.errors.lock().iter().map(|(k, v)| (*k, *v)).collect()
    }
}
