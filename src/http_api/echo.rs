//! laravel-echo-server's HTTP API, for apps and tools written against it:
//! an API key as `Authorization: Bearer <key>` or `?auth_key=<key>`, no
//! signature. Same answers and error bodies as laravel-echo-server 1.6.3 —
//! except that invalid JSON is a 400, never a crash.
//!
//! The key must be one of the app's `extra_api_keys` (laravel-echo-server's
//! `clients` keys), which are secret by configuration. The app's Pusher key
//! is never accepted: it is public (every browser bundle carries it), and
//! this API publishes to private and presence channels and lists presence
//! members without a signature. With no `extra_api_keys` the API is off.

use std::sync::OnceLock;
use std::time::Instant;

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};

use super::{ApiError, ApiResult};
use crate::core::channel::ChannelSpec;
use crate::core::connection::SocketId;
use crate::core::event::{Event, RawJson};
use crate::core::node::Node;
use crate::signing;

/// Process start, for `uptime`.
pub fn started() -> Instant {
    static START: OnceLock<Instant> = OnceLock::new();
    *START.get_or_init(Instant::now)
}

fn unauthorized() -> ApiError {
    ApiError::new(403, "Unauthorized")
}

/// Answers an echo-style request: the key is the request's Bearer token or
/// the `auth_key` query parameter; the app's `max_api_rate` applies once
/// the key is known good.
pub async fn handle(
    node: &Node,
    req: &super::ApiRequest<'_>,
    segments: &[&str],
    auth_key: Option<&str>,
    prefix: Option<&str>,
) -> ApiResult {
    let (method, bearer, body) = (req.method, req.bearer, req.body);
    let hub = &node.by_id(segments[0]).ok_or_else(unauthorized)?;
    if hub.app.extra_api_keys.is_empty() {
        hub.stats.error("api_unauthorized");
        return Err(ApiError::new(
            403,
            "the laravel-echo-server API (Bearer token / auth_key without a signature) is off \
             for this app: configure an API key in extra_api_keys \
             (RESONANCE_APP_EXTRA_API_KEYS, at least 16 characters, not the app key), or sign \
             the request as the Pusher HTTP API",
        ));
    }
    let key = bearer.or(auth_key).ok_or_else(unauthorized)?;
    // Only the secret API keys: the Pusher key is public.
    let known = hub.app.extra_api_keys.iter().any(|k| signing::same(key, k));
    if !known {
        hub.stats.error("api_unauthorized");
        return Err(unauthorized());
    }
    if !hub.app.enabled {
        return Err(ApiError::new(403, "this app is disabled"));
    }
    super::check_app_rate(req, hub)?;
    hub.stats.api_call();
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8_lossy()
            .into_owned()
    };
    match (method, &segments[1..]) {
        ("GET", ["status"]) => {
            // laravel-echo-server answers `io.engine.clientsCount` here: the
            // Socket.IO clients connected to this process, not subscriptions.
            let clients = hub
                .stats
                .socketio_clients
                .load(std::sync::atomic::Ordering::Relaxed);
            // Node's `process.memoryUsage()` fields; a native process has no
            // JS heap, so the heap figures are the resident size as well.
            let rss = crate::metrics::resident_bytes().unwrap_or(0);
            Ok(json!({
                "subscription_count": clients,
                "uptime": started().elapsed().as_secs_f64(),
                "memory_usage": {
                    "rss": rss,
                    "heapTotal": rss,
                    "heapUsed": rss,
                    "external": 0,
                    "arrayBuffers": 0,
                },
            }))
        }
        ("GET", ["channels"]) => {
            let mut channels = Map::new();
            let prefix = prefix.filter(|p| !p.is_empty()).map(str::to_string);
            for c in hub.adapter().channels(hub.clone(), prefix).await {
                if c.name == crate::custom::app_handlers::sockets::CONTROL_CHANNEL {
                    continue; // handler routes' internal channel
                }
                channels.insert(
                    c.name,
                    json!({ "subscription_count": c.subscription_count, "occupied": true }),
                );
            }
            Ok(json!({ "channels": channels }))
        }
        ("GET", ["channels", name]) => {
            let name = decode(name);
            let summary = super::cluster_channel(hub, &name).await;
            let mut out = json!({
                "subscription_count": summary.as_ref().map_or(0, |s| s.subscription_count),
                "occupied": summary.is_some(),
            });
            if name.starts_with("presence-") {
                out["user_count"] = json!(summary.and_then(|s| s.user_count).unwrap_or(0));
            }
            Ok(out)
        }
        ("GET", ["channels", name, "users"]) => {
            let name = decode(name);
            if !name.starts_with("presence-") {
                return Err(ApiError::new(
                    400,
                    "User list is only possible for Presence Channels",
                ));
            }
            let users: Vec<Value> = hub
                .members(&name)
                .iter()
                .map(|m| {
                    let id: Value = serde_json::from_str(m.id.as_str()).unwrap_or(Value::Null);
                    let info: Value = m
                        .info
                        .as_ref()
                        .and_then(|i| serde_json::from_str(i.as_str()).ok())
                        .unwrap_or(Value::Null);
                    json!({ "id": id, "user_info": info })
                })
                .collect();
            Ok(json!({ "users": users }))
        }
        ("POST", ["events"]) => {
            #[derive(Deserialize)]
            struct Body<'a> {
                channel: Option<String>,
                channels: Option<Vec<String>>,
                name: Option<String>,
                #[serde(borrow)]
                data: Option<&'a RawValue>,
                socket_id: Option<String>,
            }
            let body: Body = serde_json::from_slice(body)
                .map_err(|e| ApiError::new(400, format!("invalid JSON: {e}")))?;
            // laravel-echo-server's words for a missing field.
            const INCOMPLETE: &str = "Event must include channel, event name and data";
            let channels = match (body.channel, body.channels) {
                (Some(c), _) => vec![c],
                (None, Some(cs)) if !cs.is_empty() => cs,
                _ => return Err(ApiError::new(400, INCOMPLETE)),
            };
            let name = body
                .name
                .filter(|n| !n.is_empty())
                .ok_or_else(|| ApiError::new(400, INCOMPLETE))?;
            let data = body.data.ok_or_else(|| ApiError::new(400, INCOMPLETE))?;
            let limit = hub.app.echo_api_max_event_bytes;
            if data.get().len() > limit + 2 {
                hub.stats.dropped("echo_api", "too_large");
                tracing::warn!(
                    app_id = %hub.app.id,
                    bytes = data.get().len(),
                    limit,
                    "refused an event posted to the laravel-echo-server API: data over echo_api_max_event_bytes (413)"
                );
                return Err(ApiError::new(
                    413,
                    format!(
                        "data is {} bytes, over the app's echo_api_max_event_bytes ({limit})",
                        data.get().len()
                    ),
                ));
            }
            for c in &channels {
                ChannelSpec::parse(c)
                    .map_err(|e| ApiError::new(400, format!("channel {c:?}: {e}")))?;
            }
            let exclude = body
                .socket_id
                .filter(|s| !s.is_empty())
                .map(|s| SocketId::from_raw(&s));
            // laravel-echo-server's devMode lines, which users grep for.
            tracing::debug!("Channel: {}", channels.join(", "));
            tracing::debug!("Event: {name}");
            for channel in channels {
                let event = Event::message(
                    channel,
                    name.as_str(),
                    RawJson::from_validated(data.get()),
                    exclude.clone(),
                );
                node.publish_queued(hub, event).await;
            }
            Ok(json!({ "message": "ok" }))
        }
        _ => Err(ApiError::new(404, "not found")),
    }
}
