//! The Pusher front-end's entry: refusals pusher-js understands, then the
//! upgrade to the lean WebSocket connection (plain or TLS) and its session.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::header::{COOKIE, ORIGIN};
use hyper::{Request, Response, StatusCode};

use super::{Body, State, json_error};
use crate::core::hub::{ConnectionSlot, Hub};
use crate::pusher::{protocol as pusher_wire, session};
use crate::ws;

/// Why a Pusher connection is refused right after the upgrade: pusher-js
/// only understands refusals as `pusher:error` plus a close code.
fn refusal(
    state: &State,
    hub: Option<&Arc<Hub>>,
    origin: Option<&str>,
) -> Result<ConnectionSlot, (u16, String)> {
    let Some(hub) = hub else {
        // While the apps database is unreachable an app added there may
        // just be unknown here yet: ask the client to come back (41xx:
        // pusher-js retries after a pause) rather than give up (4001).
        if state
            .node
            .dependencies()
            .contains(&(crate::apps::db::DEPENDENCY, false))
        {
            return Err((4100, "apps database unavailable; try again shortly".into()));
        }
        return Err((4001, "application does not exist: check the app key".into()));
    };
    if !hub.app.enabled {
        return Err((4003, "application is disabled".into()));
    }
    if !state.ready.load(Ordering::SeqCst) {
        return Err((4200, "server is shutting down; reconnect".into()));
    }
    if !hub.app.origin_allowed(origin) {
        hub.stats.error("origin_refused");
        return Err((
            4009,
            format!(
                "origin {:?} is not allowed for this app",
                origin.unwrap_or("")
            ),
        ));
    }
    hub.try_connect().ok_or_else(|| {
        hub.stats.error("over_connection_quota");
        (4004, "application is over its connection quota".into())
    })
}

pub(super) fn pusher_upgrade(
    state: &Arc<State>,
    mut req: Request<Incoming>,
    key: &str,
) -> Response<Body> {
    if !ws::is_upgrade(&req) {
        return json_error(
            StatusCode::UPGRADE_REQUIRED,
            "this is the Pusher WebSocket endpoint; connect with a WebSocket client",
        );
    }
    let handshake = match ws::handshake(&mut req, None) {
        Ok(h) => h,
        Err(response) => return *response,
    };
    let hub = state.node.by_key(key);
    let origin = req.headers().get(ORIGIN).and_then(|o| o.to_str().ok());
    let cookie: Option<Arc<str>> = req
        .headers()
        .get(COOKIE)
        .and_then(|c| c.to_str().ok())
        .map(Into::into);
    let verdict = refusal(state, hub.as_ref(), origin);
    let state = state.clone();
    state.sessions.clone().spawn(async move {
        let upgraded = match handshake.upgrade.await {
            Ok(u) => u,
            Err(e) => {
                tracing::debug!(error = %e, "upgrade failed");
                return;
            }
        };
        let mut socket =
            match ws::LeanSocket::from_upgraded(upgraded, state.config.max_message_bytes) {
                Ok(socket) => socket,
                Err(_) => {
                    // The listener only accepts TCP (or TLS over TCP) streams.
                    tracing::warn!("upgraded connection is neither TCP nor TLS over TCP");
                    return;
                }
            };
        match (verdict, hub) {
            (Ok(slot), Some(hub)) => {
                // Held until the session ends, however it ends.
                let _slot = slot;
                session::run(
                    socket,
                    state.node.clone(),
                    hub,
                    state.config.clone(),
                    state.shutdown.clone(),
                    cookie,
                )
                .await;
            }
            (Err((code, message)), _) => {
                let timeout = Duration::from_secs(2);
                if socket
                    .send_text([pusher_wire::error(Some(code), &message)])
                    .is_ok()
                {
                    socket.close(code, "connection refused", timeout).await;
                }
            }
            // `refusal` never accepts without a hub.
            (Ok(_), None) => {}
        }
    });
    handshake.response
}
