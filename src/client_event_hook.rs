//! `client_event_hook` (an app setting): before a `client-*` event from a
//! Pusher or Socket.IO client is relayed, it is `POST`ed to the app
//! (signed, see [`crate::app_call`]) as
//! `{"channel","event","data","socket_id","user_id"}` with
//! `X-Resonance-Event: client_event`.
//!
//! - 2xx: relayed; a JSON body `{"data": ...}` replaces the data.
//! - 4xx: dropped silently (the app said no).
//! - anything else, a timeout (`auth_timeout`) or an unreachable app:
//!   dropped, logged and counted (`client_event_hook_failed`).
//!
//! Without the setting nothing changes: [`relay`] publishes at once, with
//! no call and no allocation beyond the event itself. With it, each event
//! waits for its answer in a tracked task; hooked events in flight are
//! bounded ([`MAX_PENDING`] per node; over it they are dropped and counted
//! as `client_event_hook_busy`), and the calls share the app-call pool.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use serde_json::value::RawValue;

use crate::app_call::{self, Call, Outcome};
use crate::core::event::{Event, EventKind, RawJson};
use crate::core::hub::Hub;
use crate::core::node::Node;

/// Hooked client events waiting for the app on one node (all apps).
pub const MAX_PENDING: usize = 1024;

/// Relays `event` (as the app approved it): the client-event happening
/// (webhooks) first, then the cluster-wide publish.
fn publish(node: &Arc<Node>, hub: &Arc<Hub>, event: Event) {
    hub.client_event_relayed(&event);
    node.publish(hub, event);
}

/// Relays a client event: through the app's hook when it has one, at once
/// otherwise. `event` is the event as the front-end would publish it (its
/// `exclude` is the sender); `signed_in` is the sender's user when it
/// signed in (a presence member's id, in the event, comes first).
pub fn relay(node: &Arc<Node>, hub: &Arc<Hub>, event: Event, signed_in: Option<&str>) {
    let Some(url) = hub.app.client_event_hook.as_deref() else {
        publish(node, hub, event);
        return;
    };
    let url = match app_call::parse_url(url) {
        Ok(u) => u,
        Err(e) => {
            tracing::warn!(error = %e, "client_event_hook is not a usable URL; event dropped");
            hub.stats.error("client_event_hook_failed");
            return;
        }
    };
    let Some(pending) = Pending::acquire() else {
        hub.stats.error("client_event_hook_busy");
        return;
    };
    let EventKind::Message {
        name,
        data,
        user_id,
    } = &event.kind
    else {
        publish(node, hub, event);
        return;
    };
    let data_value: &RawValue = match serde_json::from_str(data.as_str()) {
        Ok(v) => v,
        Err(_) => return,
    };
    let body = serde_json::json!({
        "channel": &*event.channel,
        "event": &**name,
        "data": data_value,
        "socket_id": event.exclude.as_ref().map(|s| s.as_str()),
        "user_id": user_id.as_deref().or(signed_in),
    })
    .to_string();
    let (node2, hub2) = (node.clone(), hub.clone());
    node.spawn(async move {
        let _pending = pending;
        let outcome = app_call::post(Call {
            url: &url,
            secret: &hub2.app.secret,
            event: "client_event",
            body: Bytes::from(body),
            headers: Vec::new(),
            timeout: Duration::from_secs(hub2.app.auth_timeout.max(1)),
        })
        .await;
        let failed = |why: String| {
            tracing::warn!(channel = %event.channel, error = %why, "client_event_hook failed; event dropped");
            hub2.stats.error("client_event_hook_failed");
        };
        match outcome {
            Outcome::Answered { status, body } if (200..300).contains(&status) => {
                match replacement(&body) {
                    Ok(None) => publish(&node2, &hub2, event),
                    Ok(Some(data)) => publish(&node2, &hub2, with_data(event, data)),
                    Err(e) => failed(e),
                }
            }
            Outcome::Answered { status, .. } if (400..500).contains(&status) => {
                hub2.stats.error("client_event_hook_dropped");
            }
            Outcome::Answered { status, .. } => failed(format!("status {status}")),
            Outcome::TimedOut => failed("timed out".into()),
            Outcome::Failed(e) => failed(e),
        }
    });
}

/// The `"data"` of a 2xx answer, if it replaces the event's.
fn replacement(body: &[u8]) -> Result<Option<RawJson>, String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    #[derive(serde::Deserialize)]
    struct Answer<'a> {
        #[serde(borrow)]
        data: Option<&'a RawValue>,
    }
    let answer: Answer<'_> =
        serde_json::from_slice(body).map_err(|e| format!("answer is not a JSON object: {e}"))?;
    Ok(answer.data.map(|d| RawJson::from_validated(d.get())))
}

fn with_data(event: Event, data: RawJson) -> Event {
    let Event {
        channel,
        kind,
        exclude,
        ..
    } = event;
    let kind = match kind {
        EventKind::Message { name, user_id, .. } => EventKind::Message {
            name,
            data,
            user_id,
        },
        other => other,
    };
    Event::new(channel, kind, exclude)
}

/// Hooked events in flight on this node.
static PENDING: AtomicUsize = AtomicUsize::new(0);

/// A place among the hooked events in flight.
struct Pending;

impl Pending {
    fn acquire() -> Option<Pending> {
        if PENDING.fetch_add(1, Ordering::AcqRel) >= MAX_PENDING {
            PENDING.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(Pending)
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        PENDING.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replacements() {
        assert_eq!(replacement(b"").unwrap(), None);
        assert_eq!(replacement(b"{}").unwrap(), None);
        assert_eq!(
            replacement(br#"{"data":{"x":1}}"#).unwrap(),
            Some(RawJson::from_validated(r#"{"x":1}"#))
        );
        assert!(replacement(b"nope").is_err());
    }
}
