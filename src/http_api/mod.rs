//! The Pusher HTTP API (`/apps/{id}/...`): what Laravel's `pusher` and
//! `reverb` broadcasters and every Pusher server SDK call.
//!
//! A trigger returns once its events are queued on the local recipients'
//! outboxes (a few microseconds per thousand); it never waits for a socket
//! write, so a slow browser cannot slow the app down.

pub mod echo;
pub mod signature;

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use percent_encoding::percent_decode_str;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};

use crate::core::app::AppConfig;
use crate::core::channel::ChannelSpec;
use crate::core::connection::SocketId;
use crate::core::event::{Event, RawJson};
use crate::core::hub::{ChannelSummary, Hub};
use crate::core::node::Node;

/// An API failure: HTTP status and a message for a person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: u16,
    pub message: String,
}

impl ApiError {
    pub fn new(status: u16, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
        }
    }

    fn bad(message: impl Into<String>) -> Self {
        ApiError::new(400, message)
    }
}

/// A successful answer: status 200 and a JSON body.
pub type ApiResult = Result<Value, ApiError>;

/// One request, already read (bounded) by the server.
pub struct ApiRequest<'a> {
    pub method: &'a str,
    /// The raw path, as signed by the client.
    pub path: &'a str,
    pub query: &'a str,
    pub body: &'a Bytes,
    /// The `Authorization: Bearer` token, for the laravel-echo-server API.
    pub bearer: Option<&'a str>,
    /// Per-app request rates (`max_api_rate`), counted once a request is
    /// authenticated so that strangers cannot use up an app's budget.
    pub app_rate: Option<&'a crate::limits::RateLimiter<String>>,
}

/// Refuses an authenticated request over the app's `max_api_rate` (429).
fn check_app_rate(req: &ApiRequest<'_>, hub: &Hub) -> Result<(), ApiError> {
    if let Some(rate) = req.app_rate
        && !rate.check(&hub.app.id, hub.app.max_api_rate)
    {
        hub.stats.error("api_rate_limited");
        return Err(ApiError::new(
            429,
            format!(
                "app {} is over its API rate (at most {} requests per second); slow down",
                hub.app.id, hub.app.max_api_rate
            ),
        ));
    }
    Ok(())
}

/// A request with no credentials at all (no Bearer, no `auth_key`, no
/// signature) for an app that has the laravel-echo-server API on: it gets
/// that API's answer for a missing key, the same 403 as a wrong key (as
/// laravel-echo-server does), rather than the Pusher API's 401.
fn no_credentials_for_echo_app(node: &Node, path: &str, params: &[(String, String)]) -> bool {
    if params
        .iter()
        .any(|(k, _)| k == "auth_key" || k == "auth_signature")
    {
        return false;
    }
    let Some(rest) = path.strip_prefix("/apps/") else {
        return false;
    };
    let id = rest.split('/').next().unwrap_or_default();
    match node.by_id(id) {
        Some(hub) => !hub.app.extra_api_keys.is_empty(),
        // An unknown app: laravel-echo-server's 403 when this node serves
        // that API at all, else the Pusher API's 404.
        None => node.hubs().iter().any(|h| !h.app.extra_api_keys.is_empty()),
    }
}

/// Routes and answers an `/apps/...` request.
pub async fn handle(node: &Node, req: &ApiRequest<'_>) -> ApiResult {
    let params = signature::parse_query(req.query);
    let param = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    // laravel-echo-server API calls carry the key as a Bearer token or a
    // bare auth_key (no signature), or ask for its own `/status`; all else
    // is the Pusher API (where a request without credentials is a 401).
    let echo_style = req.bearer.is_some()
        || (param("auth_key").is_some() && param("auth_signature").is_none())
        || req.path.ends_with("/status")
        || no_credentials_for_echo_app(node, req.path, &params);
    if echo_style && let Some(rest) = req.path.strip_prefix("/apps/") {
        let segments: Vec<&str> = rest.split('/').collect();
        return echo::handle(
            node,
            req,
            &segments,
            param("auth_key"),
            param("filter_by_prefix"),
        )
        .await;
    }
    let (hub, segments) = if let Some(rest) = req.path.strip_prefix("/apps/") {
        let segments: Vec<&str> = rest.split('/').collect();
        let hub = node
            .by_id(segments[0])
            .ok_or_else(|| ApiError::new(404, format!("no app with id {:?}", segments[0])))?;
        (hub, segments)
    } else {
        // The Python SDK (pusher 3.3) posts terminate_connections to
        // `/users/{id}/...` without `/apps/{id}`: find the app by its key.
        let key = params
            .iter()
            .find(|(k, _)| k == "auth_key")
            .map(|(_, v)| v.as_str());
        let hub = key
            .and_then(|k| node.by_key(k))
            .ok_or_else(|| ApiError::new(401, "unknown auth_key: no app has this key"))?;
        let segments: Vec<&str> = std::iter::once("")
            .chain(req.path[1..].split('/'))
            .collect();
        (hub, segments)
    };
    let hub = &hub;
    hub.stats.api_call();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    if let Err(e) = signature::verify(&hub.app, req.method, req.path, &params, req.body, now) {
        hub.stats.error("api_unauthorized");
        return Err(e);
    }
    if !hub.app.enabled {
        return Err(ApiError::new(403, "this app is disabled"));
    }
    check_app_rate(req, hub)?;
    let param = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let decode = |s: &str| percent_decode_str(s).decode_utf8_lossy().into_owned();
    let result = match (req.method, &segments[1..]) {
        ("POST", ["events"]) => trigger(node, hub, req.body).await,
        ("POST", ["batch_events"]) => batch(node, hub, req.body).await,
        ("GET", ["channels"]) => channels(hub, param("filter_by_prefix"), param("info")).await,
        ("GET", ["channels", name]) => channel(hub, &decode(name), param("info")).await,
        ("GET", ["channels", name, "users"]) => users(hub, &decode(name)),
        ("POST", ["users", user, "terminate_connections"]) => terminate(hub, &decode(user)),
        _ => Err(ApiError::new(
            404,
            format!("no API endpoint {} {}", req.method, req.path),
        )),
    };
    if let Err(e) = &result {
        hub.stats.error(if e.status == 413 {
            "api_too_large"
        } else {
            "api_bad_request"
        });
    }
    result
}

/// One event as the API receives it (`/events` and each `batch` entry).
#[derive(Deserialize)]
struct TriggerBody<'a> {
    name: Option<String>,
    #[serde(borrow)]
    data: Option<&'a RawValue>,
    channel: Option<String>,
    channels: Option<Vec<String>>,
    socket_id: Option<String>,
    info: Option<String>,
}

/// A validated trigger, ready to publish.
struct Trigger {
    name: String,
    data: RawJson,
    channels: Vec<String>,
    exclude: Option<SocketId>,
    info: Option<String>,
}

fn parse_json<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad(format!("request body is not valid JSON: {e}")))
}

/// Byte length of `data` as the app sent it (a string's decoded length).
fn data_len(raw: &RawValue, limit: usize) -> usize {
    let text = raw.get();
    // An escaped string literal is never shorter than its content, so the
    // exact length is only worth computing near the limit.
    if text.len() <= limit + 2 {
        return text.len().saturating_sub(2);
    }
    serde_json::from_str::<String>(text).map_or(text.len(), |s| s.len())
}

fn validate(app: &AppConfig, body: TriggerBody<'_>) -> Result<Trigger, ApiError> {
    let name = body
        .name
        .filter(|n| !n.is_empty())
        .ok_or_else(|| ApiError::bad("missing event \"name\""))?;
    if name.len() > 200 {
        return Err(ApiError::bad("event name is longer than 200 characters"));
    }
    let data = body
        .data
        .ok_or_else(|| ApiError::bad("missing event \"data\""))?;
    if data_len(data, app.max_event_bytes) > app.max_event_bytes {
        return Err(ApiError::new(
            413,
            format!(
                "event data is larger than this app's limit of {} bytes",
                app.max_event_bytes
            ),
        ));
    }
    let channels = match (body.channel, body.channels) {
        (Some(c), None) => vec![c],
        (None, Some(cs)) => cs,
        (Some(_), Some(_)) => {
            return Err(ApiError::bad(
                "give either \"channel\" or \"channels\", not both",
            ));
        }
        (None, None) => return Err(ApiError::bad("missing \"channel\" or \"channels\"")),
    };
    if channels.is_empty() {
        return Err(ApiError::bad("\"channels\" is empty"));
    }
    if channels.len() > app.max_channels_per_event {
        return Err(ApiError::bad(format!(
            "an event may go to at most {} channels; got {}",
            app.max_channels_per_event,
            channels.len()
        )));
    }
    for c in &channels {
        ChannelSpec::parse(c).map_err(|e| ApiError::bad(format!("channel {c:?}: {e}")))?;
    }
    let exclude =
        match body.socket_id {
            Some(s) => Some(SocketId::parse(&s).ok_or_else(|| {
                ApiError::bad(format!("socket_id {s:?} is not of the form 123.456"))
            })?),
            None => None,
        };
    Ok(Trigger {
        name,
        data: RawJson::from_validated(data.get()),
        channels,
        exclude,
        info: body.info,
    })
}

async fn publish(node: &Node, hub: &Arc<Hub>, t: &Trigger) -> Result<Option<Value>, ApiError> {
    hub.api_event(&t.channels, &t.name);
    for channel in &t.channels {
        let event = Event::message(
            channel.as_str(),
            t.name.as_str(),
            t.data.clone(),
            t.exclude.clone(),
        );
        node.publish_queued(hub, event).await;
    }
    let Some(info) = t.info.as_deref() else {
        return Ok(None);
    };
    let mut out = Map::new();
    for channel in &t.channels {
        out.insert(
            channel.clone(),
            channel_info(hub, channel, hub.channel(channel), Some(info))?,
        );
    }
    Ok(Some(Value::Object(out)))
}

/// `POST /apps/{id}/events` once authenticated (also the dashboard's test
/// event).
pub(crate) async fn trigger(node: &Node, hub: &Arc<Hub>, body: &Bytes) -> ApiResult {
    let trigger = validate(&hub.app, parse_json(body)?)?;
    Ok(match publish(node, hub, &trigger).await? {
        Some(channels) => json!({ "channels": channels }),
        None => json!({}),
    })
}

async fn batch(node: &Node, hub: &Arc<Hub>, body: &Bytes) -> ApiResult {
    #[derive(Deserialize)]
    struct Batch<'a> {
        #[serde(borrow)]
        batch: Vec<TriggerBody<'a>>,
    }
    let batch: Batch = parse_json(body)?;
    let max = hub.app.max_events_per_batch;
    if batch.batch.len() > max {
        return Err(ApiError::bad(format!(
            "a batch may hold at most {max} events; got {}",
            batch.batch.len()
        )));
    }
    // Validate all before publishing any, so a bad entry publishes nothing.
    let triggers = batch
        .batch
        .into_iter()
        .enumerate()
        .map(|(i, b)| {
            if b.channels.is_some() {
                return Err(ApiError::bad(format!(
                    "batch[{i}]: use \"channel\", not \"channels\""
                )));
            }
            validate(&hub.app, b)
                .map_err(|e| ApiError::new(e.status, format!("batch[{i}]: {}", e.message)))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut infos = Vec::new();
    for t in &triggers {
        let info = publish(node, hub, t).await?;
        infos.push(
            info.and_then(|v| v.get(&t.channels[0]).cloned())
                .unwrap_or_else(|| json!({})),
        );
    }
    if triggers.iter().any(|t| t.info.is_some()) {
        Ok(json!({ "batch": infos }))
    } else {
        Ok(json!({}))
    }
}

/// The attributes asked for in `info`, checked against the channel kind.
fn wanted(info: Option<&str>) -> Vec<&str> {
    info.map(|i| {
        i.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect()
    })
    .unwrap_or_default()
}

async fn channels(hub: &Arc<Hub>, prefix: Option<&str>, info: Option<&str>) -> ApiResult {
    let attrs = wanted(info);
    for a in &attrs {
        match *a {
            "user_count" if !prefix.is_some_and(|p| p.starts_with("presence-")) => {
                return Err(ApiError::bad(
                    "info=user_count needs filter_by_prefix=presence- (only presence channels have users)",
                ));
            }
            "user_count" | "subscription_count" => {}
            other => return Err(ApiError::bad(format!("unknown info attribute {other:?}"))),
        }
    }
    let mut out = Map::new();
    for c in hub
        .adapter()
        .channels(hub.clone(), prefix.map(str::to_string))
        .await
        .into_iter()
        .filter(|c| c.name != crate::custom::app_handlers::sockets::CONTROL_CHANNEL)
    {
        let mut entry = Map::new();
        if attrs.contains(&"user_count") {
            entry.insert("user_count".into(), json!(c.user_count.unwrap_or(0)));
        }
        if attrs.contains(&"subscription_count") {
            entry.insert("subscription_count".into(), json!(c.subscription_count));
        }
        out.insert(c.name, Value::Object(entry));
    }
    Ok(json!({ "channels": out }))
}

/// A channel's summary across the cluster.
pub async fn cluster_channel(hub: &Arc<Hub>, name: &str) -> Option<ChannelSummary> {
    let all = hub
        .adapter()
        .channels(hub.clone(), Some(name.to_string()))
        .await;
    all.into_iter().find(|c| c.name == name)
}

fn channel_info(
    hub: &Hub,
    name: &str,
    summary: Option<ChannelSummary>,
    info: Option<&str>,
) -> ApiResult {
    let spec =
        ChannelSpec::parse(name).map_err(|e| ApiError::bad(format!("channel {name:?}: {e}")))?;
    let mut out = Map::new();
    out.insert("occupied".into(), json!(summary.is_some()));
    for attr in wanted(info) {
        match attr {
            "user_count" if !spec.is_presence() => {
                return Err(ApiError::bad(
                    "info=user_count is only available for presence channels",
                ));
            }
            "user_count" => {
                out.insert(
                    attr.into(),
                    json!(summary.as_ref().and_then(|s| s.user_count).unwrap_or(0)),
                );
            }
            "subscription_count" => {
                out.insert(
                    attr.into(),
                    json!(summary.as_ref().map_or(0, |s| s.subscription_count)),
                );
            }
            "cache" if spec.cached => {
                out.insert(attr.into(), json!(hub.cached(name).is_some()));
            }
            other => return Err(ApiError::bad(format!("unknown info attribute {other:?}"))),
        }
    }
    Ok(Value::Object(out))
}

async fn channel(hub: &Arc<Hub>, name: &str, info: Option<&str>) -> ApiResult {
    ChannelSpec::parse(name).map_err(|e| ApiError::bad(format!("channel {name:?}: {e}")))?;
    let summary = cluster_channel(hub, name).await;
    channel_info(hub, name, summary, info)
}

fn users(hub: &Hub, name: &str) -> ApiResult {
    let spec =
        ChannelSpec::parse(name).map_err(|e| ApiError::bad(format!("channel {name:?}: {e}")))?;
    if !spec.is_presence() {
        return Err(ApiError::bad(
            "users are only available for presence channels",
        ));
    }
    let users: Vec<Value> = hub
        .members(name)
        .iter()
        .map(|m| json!({ "id": &*m.key }))
        .collect();
    Ok(json!({ "users": users }))
}

fn terminate(hub: &Arc<Hub>, user: &str) -> ApiResult {
    hub.adapter().terminate_user(hub, user);
    Ok(json!({}))
}
