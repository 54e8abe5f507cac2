//! What the dashboard shows of one app, read from the counters the server
//! keeps anyway ([`crate::core::stats`]) and from the hub and adapter on
//! demand: nothing here runs per message.
//!
//! A sampler reads each app's counters once a second into a short history
//! (five minutes) for the rate chart; it runs only when the dashboard is
//! enabled and costs a few atomic loads per app per second.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use serde_json::{Value, json};

use crate::core::hub::Hub;
use crate::core::node::Node;

/// Seconds of rate history kept per app.
pub const HISTORY_SECONDS: usize = 300;
/// At most this many channels are listed (the busiest first).
const MAX_CHANNELS: usize = 200;
/// At most this many presence channels, with this many members each.
const MAX_PRESENCE_CHANNELS: usize = 20;
const MAX_MEMBERS: usize = 50;

/// One second of one app's traffic.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Point {
    /// Unix time, seconds.
    pub at: u64,
    pub messages_in: u64,
    pub messages_out: u64,
    pub api_calls: u64,
    pub api_errors: u64,
}

#[derive(Default)]
struct Series {
    last: Option<Totals>,
    points: VecDeque<Point>,
}

#[derive(Clone, Copy)]
struct Totals {
    messages_in: u64,
    messages_out: u64,
    api_calls: u64,
    api_errors: u64,
}

fn totals(hub: &Hub) -> Totals {
    Totals {
        messages_in: hub.stats.messages_in.load(Relaxed),
        messages_out: hub.stats.messages_out.load(Relaxed),
        api_calls: hub.stats.api_calls.load(Relaxed),
        api_errors: api_errors(hub),
    }
}

/// Refused or failed HTTP API calls (the `api_*` error kinds).
fn api_errors(hub: &Hub) -> u64 {
    hub.stats
        .errors()
        .iter()
        .filter(|(kind, _)| kind.starts_with("api_"))
        .map(|(_, n)| n)
        .sum()
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Per-app rate history, filled by [`History::run`].
#[derive(Default)]
pub struct History {
    apps: Mutex<HashMap<String, Series>>,
}

impl History {
    /// Takes one sample of every app (call once a second).
    pub fn sample(&self, node: &Node) {
        let at = unix_now();
        let mut apps = self.apps.lock();
        for hub in node.hubs().iter() {
            let now = totals(hub);
            let series = apps.entry(hub.app.id.clone()).or_default();
            if let Some(last) = series.last {
                series.points.push_back(Point {
                    at,
                    messages_in: now.messages_in.saturating_sub(last.messages_in),
                    messages_out: now.messages_out.saturating_sub(last.messages_out),
                    api_calls: now.api_calls.saturating_sub(last.api_calls),
                    api_errors: now.api_errors.saturating_sub(last.api_errors),
                });
                while series.points.len() > HISTORY_SECONDS {
                    series.points.pop_front();
                }
            }
            series.last = Some(now);
        }
    }

    /// The last `n` points of `app_id`, oldest first.
    pub fn points(&self, app_id: &str, n: usize) -> Vec<Point> {
        self.apps.lock().get(app_id).map_or_else(Vec::new, |s| {
            s.points
                .iter()
                .skip(s.points.len().saturating_sub(n))
                .copied()
                .collect()
        })
    }

    /// Samples every second until the node stops (spawn with `Node::spawn`).
    pub async fn run(self: Arc<Self>, node: std::sync::Weak<Node>) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(node) = node.upgrade() else { return };
            self.sample(&node);
        }
    }
}

pub fn point_json(p: &Point) -> Value {
    json!([
        p.at,
        p.messages_in,
        p.messages_out,
        p.api_calls,
        p.api_errors
    ])
}

/// Everything the dashboard shows of `hub`. Channels come from the adapter
/// (the whole cluster), waiting at most `wait` for other nodes.
pub async fn snapshot(
    node: &Node,
    hub: &Arc<Hub>,
    history: &History,
    started: Instant,
    history_points: usize,
    wait: Duration,
) -> Value {
    let s = &hub.stats;
    let mut channels =
        match tokio::time::timeout(wait, node.adapter().channels(hub.clone(), None)).await {
            Ok(channels) => channels,
            // A slow cluster: this node's own channels, marked partial below.
            Err(_) => hub.channels(None),
        };
    let channel_count = channels.len();
    channels.sort_by(|a, b| {
        b.subscription_count
            .cmp(&a.subscription_count)
            .then_with(|| a.name.cmp(&b.name))
    });
    let presence: Vec<Value> = channels
        .iter()
        .filter(|c| c.name.starts_with("presence-"))
        .take(MAX_PRESENCE_CHANNELS)
        .map(|c| {
            let members = hub.members(&c.name);
            let total = members.len();
            let listed: Vec<Value> = members
                .iter()
                .take(MAX_MEMBERS)
                .map(|m| {
                    let info = m
                        .info
                        .as_ref()
                        .and_then(|i| serde_json::from_str::<Value>(i.as_str()).ok());
                    json!({ "id": &*m.key, "info": info })
                })
                .collect();
            json!({ "channel": c.name, "count": total, "members": listed })
        })
        .collect();
    let listed: Vec<Value> = channels
        .iter()
        .take(MAX_CHANNELS)
        .map(|c| {
            json!({
                "name": c.name,
                "subscribers": c.subscription_count,
                "users": c.user_count,
            })
        })
        .collect();
    let errors: serde_json::Map<String, Value> = s
        .errors()
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.into()))
        .collect();
    let adapter = node.adapter();
    let nodes: Vec<Value> = adapter
        .nodes()
        .into_iter()
        .map(|n| {
            json!({
                "id": n.id,
                "this": n.this,
                "alive": n.alive,
                "last_seen_ms": n.last_seen_ms,
            })
        })
        .collect();
    let history: Vec<Value> = history
        .points(&hub.app.id, history_points)
        .iter()
        .map(point_json)
        .collect();
    json!({
        "type": "stats",
        "at": unix_now(),
        "app": { "id": hub.app.id, "key": hub.app.key },
        "connections": hub.connection_count(),
        "connections_total": s.connections_total.load(Relaxed),
        "subscriptions": s.subscriptions.load(Relaxed),
        "messages_in_total": s.messages_in.load(Relaxed),
        "messages_out_total": s.messages_out.load(Relaxed),
        "api_calls_total": s.api_calls.load(Relaxed),
        "api_errors_total": api_errors(hub),
        "errors": errors,
        "history": history,
        "channel_count": channel_count,
        "channels": listed,
        "presence": presence,
        "webhooks": if hub.app.webhooks.is_empty() {
            Value::Null
        } else {
            let w = &s.webhooks;
            json!({
                "queued": w.queued.load(Relaxed),
                "sent": w.sent.load(Relaxed),
                "failed": w.failed.load(Relaxed),
                "retried": w.retried.load(Relaxed),
                "dropped": w.dropped.load(Relaxed),
            })
        },
        "cluster": {
            "adapter": adapter.name(),
            "healthy": adapter.healthy(),
            "nodes": nodes,
        },
        "server": {
            "uptime_s": started.elapsed().as_secs(),
            "rss_bytes": crate::metrics::resident_bytes(),
            "version": env!("CARGO_PKG_VERSION"),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::adapter::LocalAdapter;
    use crate::core::app::AppConfig;

    #[test]
    fn history_keeps_per_second_deltas_and_is_bounded() {
        let node = Node::new(vec![AppConfig::default()], Arc::new(LocalAdapter));
        let hub = node.hubs()[0].clone();
        let history = History::default();
        history.sample(&node);
        assert!(history.points(&hub.app.id, 10).is_empty());
        hub.stats.received(10);
        hub.stats.received(10);
        hub.stats.delivered(5, 50);
        history.sample(&node);
        let points = history.points(&hub.app.id, 10);
        assert_eq!(points.len(), 1);
        assert_eq!((points[0].messages_in, points[0].messages_out), (2, 5));
        for _ in 0..HISTORY_SECONDS + 10 {
            history.sample(&node);
        }
        assert_eq!(
            history.points(&hub.app.id, usize::MAX).len(),
            HISTORY_SECONDS
        );
        assert_eq!(history.points(&hub.app.id, 3).len(), 3);
    }
}
