//! Custom WebSocket routes and the Rust library API: embed the server in a
//! program, mount handlers on path patterns, serve pages beside them, and
//! reach rooms, users and single connections from handler code — through
//! the same core as the Pusher front-end, so the HTTP API, metrics,
//! connection quotas and graceful shutdown cover raw connections too.
//!
//! ```no_run
//! use resonance::config::Config;
//! use resonance::custom::{Conn, Callbacks, Message, Route, http};
//! use resonance::server::Server;
//!
//! struct Chat;
//! impl Callbacks for Chat {
//!     async fn on_message(&self, conn: &Conn, msg: Message) {
//!         if let Some(room) = conn.param("room") {
//!             let _ = conn.broadcast(room, msg); // everyone in the room but the sender
//!         }
//!     }
//! }
//!
//! # async fn run() -> std::io::Result<()> {
//! let server = Server::builder(Config::default())
//!     .route("/chat/{room}", Route::callbacks(Chat).room_param("room"))
//!     .route("/echo", Route::task(|mut ws| async move {
//!         while let Some(msg) = ws.recv().await {
//!             ws.send(msg);
//!         }
//!     }))
//!     .get("/", |_req| async { http::html("<h1>hello</h1>") })
//!     .bind()
//!     .await?;
//! server.run(async { let _ = tokio::signal::ctrl_c().await; }).await;
//! # Ok(()) }
//! ```
//!
//! The parts:
//! - [`route`] — path patterns (`/chat-rooms/{id}`, `/{*rest}`) and a
//!   route's options: origins, subprotocols, authenticator, default room.
//! - [`handler`] — the two handler styles ([`Callbacks`], a task over a
//!   [`WebSocket`]) and the per-connection driver (I/O, close, panics).
//! - [`conn`] — [`Message`] and the [`Conn`] handle handlers talk through.
//! - [`rooms`] — rooms as hub channels; broadcast, emit, send to a user;
//!   who may join which room (private rooms need
//!   [`Route::authorize_rooms`]; presence and `#` names never).
//! - [`auth`] — identifying the user from the upgrade request.
//! - [`wire`] — how core events are encoded for raw connections.
//! - [`http`] — plain HTTP routes.
//! - [`app_handlers`] — `[[routes]]` from the config file: routes whose
//!   events the app handles over signed HTTP calls, and the signed socket
//!   API.
//! - `mount` — the server-side dispatch of all of the above.

pub mod app_handlers;
pub mod auth;
pub mod conn;
pub mod handler;
pub mod http;
pub(crate) mod mount;
pub mod rooms;
pub mod route;
pub mod wire;

use std::future::Future;
use std::sync::Arc;

use hyper::Method;

pub use auth::{Authenticator, HttpAuthenticator, Refusal, UpgradeRequest};
pub use conn::{CloseStatus, Conn, Message};
pub use handler::{Callbacks, Elapsed, ProtocolError, WebSocket};
pub use http::{HttpRequest, HttpResponse};
pub use mount::Routes;
pub use rooms::{RoomAuthorizer, RoomError, Rooms};

/// Close code for a connection refused a room it asked for after the
/// upgrade (the Pusher protocol's 4009, "unauthorized").
pub const ROOM_REFUSED: u16 = 4009;
pub use route::{Params, PathPattern, Route};

use crate::config::Config;
use crate::core::adapter::Adapter;
use crate::server::Server;

impl Route {
    /// A route whose connections are handled by `callbacks`' methods.
    pub fn callbacks(callbacks: impl Callbacks) -> Route {
        Route::new(handler::Handler::from_callbacks(callbacks))
    }

    /// A route whose every connection runs `task` to completion: when it
    /// returns the connection is closed (1000, or the code it gave
    /// [`Conn::close`]); if it panics the connection is closed with 1011.
    pub fn task<F, Fut>(task: F) -> Route
    where
        F: Fn(WebSocket) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        Route::new(handler::Handler::from_task(task))
    }

    /// Echoes every message back (text as text, binary as binary).
    pub fn echo() -> Route {
        Route::new(handler::Handler::echo())
    }
}

/// Builds a [`Server`] with custom routes: `Server::builder(config)`.
pub struct Builder {
    config: Config,
    adapter: Option<Arc<dyn Adapter>>,
    routes: Routes,
    error: Option<String>,
}

impl Builder {
    pub(crate) fn new(config: Config) -> Self {
        Builder {
            config,
            adapter: None,
            routes: Routes::default(),
            error: None,
        }
    }

    fn pattern(&mut self, path: &str) -> Option<PathPattern> {
        match PathPattern::parse(path) {
            Ok(p) => Some(p),
            Err(e) => {
                self.error.get_or_insert(e);
                None
            }
        }
    }

    /// Mounts a WebSocket route. Routes are tried in the order added; the
    /// Pusher endpoint `/app/{key}` always comes first.
    pub fn route(mut self, path: &str, route: Route) -> Self {
        if let Some(p) = self.pattern(path) {
            self.routes.ws.push((p, route));
        }
        self
    }

    /// Mounts an HTTP route for `method`. Custom HTTP routes are tried
    /// before the built-in ones (`/`, `/up`, ...), so `get("/", ..)`
    /// replaces the plain "OK" of `/`.
    pub fn http<F, Fut>(mut self, method: Method, path: &str, f: F) -> Self
    where
        F: Fn(HttpRequest) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = HttpResponse> + Send + 'static,
    {
        if let Some(p) = self.pattern(path) {
            self.routes
                .http
                .push((method, p, http::HttpHandler::new(f)));
        }
        self
    }

    /// Mounts an HTTP `GET` route.
    pub fn get<F, Fut>(self, path: &str, f: F) -> Self
    where
        F: Fn(HttpRequest) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = HttpResponse> + Send + 'static,
    {
        self.http(Method::GET, path, f)
    }

    /// The cross-node adapter (by default the one the config's `[cluster]`
    /// names: local, or Redis).
    pub fn adapter(mut self, adapter: Arc<dyn Adapter>) -> Self {
        self.adapter = Some(adapter);
        self
    }

    /// Binds the listener (`config.server.host:port`; port 0 picks a free
    /// one, see [`Server::local_addr`]). A malformed route is an
    /// `InvalidInput` error naming it.
    pub async fn bind(self) -> std::io::Result<Server> {
        if let Some(e) = self.error {
            return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, e));
        }
        let mut routes = Routes::from_config(&self.config.server)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        routes.ws.extend(self.routes.ws);
        routes.http.extend(self.routes.http);
        let adapter = match self.adapter {
            Some(adapter) => adapter,
            None => crate::adapter::from_config(&self.config.cluster)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?,
        };
        Server::bind_routes(self.config, adapter, routes).await
    }
}
