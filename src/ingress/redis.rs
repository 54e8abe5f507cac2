//! Laravel's `redis` broadcaster: `PUBLISH <prefix><channel>
//! {"event","data","socket"}`, consumed with `PSUBSCRIBE <prefix>*`.
//!
//! Redis pub/sub keeps nothing for absent subscribers, so a reconnect can
//! lose what was published while the link was down but can never deliver
//! a message twice. The task reconnects with exponential back-off (capped)
//! and reports its state in the app's stats, which `/ready` and `/metrics`
//! read.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use parking_lot::Mutex;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::core::channel::ChannelSpec;
use crate::core::connection::SocketId;
use crate::core::event::{Event, EventKind, RawJson};
use crate::core::hub::Hub;
use crate::core::node::Node;

const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// What Laravel's broadcaster publishes.
#[derive(Deserialize)]
struct LaravelMessage<'a> {
    event: String,
    #[serde(borrow)]
    data: Option<&'a RawValue>,
    #[serde(default)]
    socket: Option<serde_json::Value>,
}

/// Why a published message was not delivered: a `/metrics` reason tag
/// and a sentence for the log.
#[derive(Debug)]
pub struct Dropped {
    pub reason: &'static str,
    pub problem: String,
}

fn dropped(reason: &'static str, problem: impl Into<String>) -> Dropped {
    Dropped {
        reason,
        problem: problem.into(),
    }
}

/// Turns one published message into an event, or says why it cannot.
/// `max_data_bytes` is the app's `redis_max_event_bytes` (Laravel's
/// broadcaster has no limit of its own, so the default is generous); the
/// event name is limited to 200 characters as on the HTTP API.
pub fn parse_message(
    channel: &str,
    payload: &[u8],
    max_data_bytes: usize,
) -> Result<Event, Dropped> {
    let msg: LaravelMessage = serde_json::from_slice(payload)
        .map_err(|e| dropped("not_a_broadcast", format!("not a Laravel broadcast ({e})")))?;
    ChannelSpec::parse(channel).map_err(|e| dropped("bad_channel", format!("bad channel: {e}")))?;
    if msg.event.is_empty() || msg.event.len() > 200 {
        return Err(dropped(
            "bad_event_name",
            "event name must be 1 to 200 characters",
        ));
    }
    if let Some(d) = msg.data
        && d.get().len() > max_data_bytes + 2
    {
        return Err(dropped(
            "too_large",
            format!(
                "data is {} bytes, over the app's redis_max_event_bytes ({max_data_bytes}; \
                 RESONANCE_APP_REDIS_MAX_EVENT_BYTES raises it)",
                d.get().len()
            ),
        ));
    }
    let exclude = match msg.socket {
        Some(serde_json::Value::String(s)) if !s.is_empty() => Some(SocketId::from_raw(&s)),
        _ => None,
    };
    let data = msg.data.map_or_else(
        || RawJson::from_validated("null"),
        |d| RawJson::from_validated(d.get()),
    );
    Ok(Event::message(channel, msg.event, data, exclude))
}

/// Warns once per channel and reason, so a misbehaving publisher cannot
/// flood the log (every drop is counted in `/metrics` all the same).
struct WarnOnce(Mutex<HashSet<(String, &'static str)>>);

impl WarnOnce {
    fn warn(&self, app_id: &str, channel: &str, drop: &Dropped) {
        let mut seen = self.0.lock();
        if seen.len() < 1024 && seen.insert((channel.to_string(), drop.reason)) {
            tracing::warn!(
                app_id,
                channel,
                reason = drop.reason,
                problem = %drop.problem,
                "dropped a Redis message (counted in resonance_dropped_events_total; further ones on this channel for this reason are not logged)"
            );
        }
    }
}

/// Runs the ingestion for `hub`'s app until the node stops its tasks.
/// Events go to this node's subscribers through the node's ordered lanes:
/// in order per channel, and a big channel's fan-out does not delay the
/// messages behind it on other channels.
pub async fn run(node: Arc<Node>, hub: Arc<Hub>) {
    let Some(url) = hub.app.redis_url.clone() else {
        return;
    };
    let prefix = hub.app.redis_prefix.clone();
    let pattern = format!("{}*", glob_escape(&prefix));
    let warned = WarnOnce(Mutex::new(HashSet::new()));
    let mut backoff = Duration::from_millis(200);
    // A Redis Cluster's seeds (Laravel's PUBLISH reaches every node of a
    // cluster, so any one serves): tried in turn, one per reconnection.
    let urls = crate::adapter::broker::url_list(&url);
    let mut attempt = 0usize;
    hub.stats.set_ingress_connected(false);
    if prefix.is_empty() {
        tracing::info!(app_id = %hub.app.id, "redis_prefix is empty: Redis channel names are used as they are");
    }
    loop {
        let url = urls.get(attempt % urls.len().max(1)).unwrap_or(&url);
        attempt = attempt.wrapping_add(1);
        match subscribe(url, &pattern).await {
            Ok(pubsub) => {
                tracing::info!(app_id = %hub.app.id, %pattern, "Redis ingestion connected");
                hub.stats.set_ingress_connected(true);
                backoff = Duration::from_millis(200);
                let mut messages = pubsub.into_on_message();
                while let Some(msg) = messages.next().await {
                    let Some(channel) = msg.get_channel_name().strip_prefix(prefix.as_str()) else {
                        continue;
                    };
                    // Cluster traffic (`{prefix}#...`) shares the Redis; no
                    // Pusher channel name contains '#' past its start.
                    if channel.contains('#') && !channel.starts_with('#') {
                        continue;
                    }
                    // Every node consumes Laravel's publishes itself, so the
                    // event goes to this node's clients only (no re-broadcast).
                    match parse_message(
                        channel,
                        msg.get_payload_bytes(),
                        hub.app.redis_max_event_bytes,
                    ) {
                        Ok(event) => {
                            // laravel-echo-server's devMode lines, which users grep for.
                            if let EventKind::Message { name, .. } = &event.kind {
                                tracing::debug!("Channel: {}{channel}", prefix);
                                tracing::debug!("Event: {name}");
                            }
                            node.deliver_queued(&hub, Arc::new(event)).await
                        }
                        Err(problem) => {
                            hub.stats.error("redis_bad_message");
                            hub.stats.dropped("redis", problem.reason);
                            if prefix.is_empty()
                                && (channel.contains("_database_")
                                    || channel.contains("-database-"))
                            {
                                tracing::warn!(
                                    channel,
                                    "this looks like a Laravel key prefix: set redis_prefix"
                                );
                            }
                            warned.warn(&hub.app.id, channel, &problem);
                        }
                    }
                }
                hub.stats.set_ingress_connected(false);
                tracing::warn!(app_id = %hub.app.id, "Redis ingestion lost its connection; reconnecting");
            }
            Err(e) => {
                hub.stats.set_ingress_connected(false);
                tracing::warn!(app_id = %hub.app.id, error = %e, retry_in_ms = backoff.as_millis() as u64, "cannot subscribe to Redis");
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

async fn subscribe(
    url: &str,
    pattern: &str,
) -> crate::adapter::broker::BrokerResult<redis::aio::PubSub> {
    let client = crate::adapter::broker::redis::client_for(url).await?;
    let mut pubsub = tokio::time::timeout(Duration::from_secs(5), client.get_async_pubsub())
        .await
        .map_err(|_| "connecting to Redis timed out")??;
    pubsub.psubscribe(pattern).await?;
    Ok(pubsub)
}

/// Escapes Redis glob characters so the prefix matches literally.
fn glob_escape(prefix: &str) -> String {
    let mut out = String::with_capacity(prefix.len());
    for c in prefix.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn laravel_payloads() {
        let e = parse_message(
            "orders",
            br#"{"event":"App\\Events\\OrderShipped","data":{"id":5},"socket":null}"#,
            100,
        )
        .unwrap();
        assert!(e.exclude.is_none());
        match &e.kind {
            EventKind::Message { name, data, .. } => {
                assert_eq!(&**name, "App\\Events\\OrderShipped");
                assert_eq!(data.as_str(), r#"{"id":5}"#);
            }
            _ => panic!("not a message"),
        }
        let e = parse_message(
            "private-a",
            br#"{"event":"X","data":"text","socket":"123.456"}"#,
            100,
        )
        .unwrap();
        assert_eq!(e.exclude.as_ref().map(|s| s.as_str()), Some("123.456"));
        assert!(parse_message("orders", b"not json", 100).is_err());
        assert!(parse_message("orders", br#"{"data":{}}"#, 100).is_err());
        assert!(parse_message("bad channel", br#"{"event":"X","data":{}}"#, 100).is_err());
        let big = format!(r#"{{"event":"X","data":"{}"}}"#, "x".repeat(200));
        assert_eq!(
            parse_message("orders", big.as_bytes(), 100)
                .err()
                .map(|d| d.reason),
            Some("too_large")
        );
        assert!(parse_message("orders", big.as_bytes(), 202).is_ok());
        assert_eq!(
            parse_message("orders", b"not json", 100)
                .err()
                .map(|d| d.reason),
            Some("not_a_broadcast")
        );
    }

    #[test]
    fn prefixes_match_literally() {
        assert_eq!(glob_escape("laravel_database_"), "laravel_database_");
        assert_eq!(glob_escape("a*b"), "a\\*b");
    }
}
