//! App handlers over HTTP: `[[routes]]` whose WebSocket events are handled
//! by the app (PHP, Python, Node, Ruby...) through signed `POST`s, the way
//! AWS API Gateway's WebSocket integrations and Pushpin's
//! WebSocket-over-HTTP do. Resonance holds the sockets; the app answers.
//!
//! - [`config`] — the `[[routes]]` entries and their checks.
//! - [`session`] — the contract: `connect` before the 101, `message` one
//!   at a time per connection, `close` once per accepted connection.
//! - [`actions`] — what an answer may ask for (send, join, broadcast, ...).
//! - [`sockets`] — this node's handler connections, and reaching a socket
//!   on another node through the cluster adapter.
//! - [`api`] — the signed HTTP API for sockets, rooms and users
//!   (`/apps/{id}/sockets/{socket_id}/send`, ...).
//!
//! Calls go out through [`crate::app_call`] (pooled, bounded, signed).

pub mod actions;
pub mod api;
pub mod config;
pub mod session;
pub mod sockets;

pub use config::RouteConfig;
pub use session::PeerAddr;

use std::sync::Arc;

use crate::custom::handler::Handler;
use crate::custom::route::{PathPattern, Route};

/// Builds the WebSocket routes of `[[routes]]` (checked by config
/// validation already; a bad entry is still an error here, not a panic).
pub fn routes(configs: &[RouteConfig]) -> Result<Vec<(PathPattern, Route)>, String> {
    configs
        .iter()
        .enumerate()
        .map(|(i, cfg)| {
            let pattern =
                PathPattern::parse(&cfg.path).map_err(|e| format!("routes[{i}].path: {e}"))?;
            let handler = Arc::new(session::HandlerRoute::new(cfg.clone())?);
            let mut route = Route::new(Handler::from_task(|_ws| async {}))
                // Rooms a handler route joins are chosen by the app (its
                // answers, its signed API): private names are the app's call.
                // Rooms from the path are checked before the upgrade.
                .authorize_rooms(|_, _| true);
            route.app_id = cfg.app.clone();
            route.app_handler = Some(handler);
            Ok((pattern, route))
        })
        .collect()
}
