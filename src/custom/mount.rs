//! Custom routes mounted on a running server: the server's router hands
//! every request here first (after the Pusher endpoint `/app/{key}`), and
//! gets it back when no custom route matches.
//!
//! An upgrade is checked in the order that keeps refused clients cheapest:
//! path, origin, shutdown, authenticator, default room, app quota, and only
//! then the handshake, so a refusal is an HTTP status and never a socket.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::FutureExt;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{ORIGIN, SEC_WEBSOCKET_PROTOCOL};
use hyper::{Method, Request, Response, StatusCode};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::app_handlers::{self, PeerAddr, sockets::AppSockets};
use super::auth::UpgradeRequest;
use super::conn::Conn;
use super::handler::{self, Handler};
use super::http::{self, HttpHandler, HttpRequest};
use super::rooms::{Registry, RoomAuthorizer, RoomError, Rooms, joinable, user_channel};
use super::route::{PathPattern, Route};
use super::wire::RAW_WIRE;
use crate::config::ServerConfig;
use crate::core::channel::ChannelSpec;
use crate::core::connection::{Connection, SocketId};
use crate::core::hub::{ConnectionSlot, Hub};
use crate::core::node::Node;
use crate::ws;

type Body = Full<Bytes>;

/// Largest message the built-in echo route takes: 16 MiB, the largest the
/// Autobahn suite sends, whatever `max_message_bytes` says for Pusher
/// clients. It is a diagnostic route: enable it where you run checks.
pub const ECHO_MAX_MESSAGE: usize = 16 << 20;

/// Routes as the builder collected them, before the server exists.
#[derive(Clone, Default)]
pub struct Routes {
    pub(crate) ws: Vec<(PathPattern, Route)>,
    pub(crate) http: Vec<(Method, PathPattern, HttpHandler)>,
}

impl Routes {
    /// The routes the configuration asks for (`[server] echo_path`).
    pub fn from_config(config: &ServerConfig) -> Result<Routes, String> {
        let mut routes = Routes::default();
        if let Some(path) = &config.echo_path {
            let limit = config.max_message_bytes.max(ECHO_MAX_MESSAGE);
            let route = Route::new(Handler::echo()).max_message_bytes(limit);
            routes.ws.push((PathPattern::parse(path)?, route));
        }
        Ok(routes)
    }
}

struct WsRoute {
    pattern: PathPattern,
    route: Route,
    rooms: Rooms,
}

/// Custom routes bound to a server's node, limits and shutdown.
pub(crate) struct Mount {
    ws: Vec<WsRoute>,
    http: Vec<(Method, PathPattern, HttpHandler)>,
    registries: HashMap<String, Arc<Registry>>,
    node: Arc<Node>,
    config: Arc<ServerConfig>,
    shutdown: CancellationToken,
    sessions: TaskTracker,
    /// Handler-route connections per app (apps with `[[routes]]` only).
    handler_sockets: HashMap<String, Arc<AppSockets>>,
}

impl Mount {
    pub(crate) fn new(
        routes: Routes,
        node: Arc<Node>,
        config: Arc<ServerConfig>,
        shutdown: CancellationToken,
        sessions: TaskTracker,
    ) -> Result<Mount, String> {
        let registries: HashMap<String, Arc<Registry>> = node
            .hubs()
            .iter()
            .map(|h| (h.app.id.clone(), Arc::default()))
            .collect();
        let mut ws = Vec::new();
        let mut handler_sockets: HashMap<String, Arc<AppSockets>> = HashMap::new();
        for (pattern, route) in routes.ws {
            let hub = match &route.app_id {
                Some(id) => node
                    .by_id(id)
                    .ok_or_else(|| format!("route {}: no app with id {id:?}", pattern.as_str()))?,
                None => node
                    .hubs()
                    .first()
                    .ok_or("custom routes need at least one app")?,
            };
            if let Some(param) = &route.room_param
                && !pattern.has_param(param)
            {
                return Err(format!(
                    "route {}: room_param {param:?} is not a parameter of the path",
                    pattern.as_str()
                ));
            }
            let rooms = Rooms::new(node.clone(), hub.clone(), registries[&hub.app.id].clone());
            if let Some(handler) = &route.app_handler {
                let sockets = handler_sockets
                    .entry(hub.app.id.clone())
                    .or_insert_with(|| AppSockets::start(node.clone(), rooms.clone()));
                handler.bind(sockets.clone());
            }
            ws.push(WsRoute {
                pattern,
                route,
                rooms,
            });
        }
        Ok(Mount {
            ws,
            http: routes.http,
            registries,
            node,
            config,
            shutdown,
            sessions,
            handler_sockets,
        })
    }

    /// Answers the signed socket API (`/apps/{id}/sockets/...`,
    /// `/rooms/{room}/broadcast`, `/users/{id}/send`); `None` for any
    /// other path.
    pub(crate) async fn socket_api(
        &self,
        req: &crate::http_api::ApiRequest<'_>,
    ) -> Option<crate::http_api::ApiResult> {
        if !app_handlers::api::is_socket_api(req.path) {
            return None;
        }
        Some(app_handlers::api::handle(&self.handler_sockets, req).await)
    }

    /// Rooms of app `id` (the first app when `None`).
    pub(crate) fn rooms(&self, id: Option<&str>) -> Option<Rooms> {
        let hub = match id {
            Some(id) => self.node.by_id(id)?,
            None => self.node.hubs().first()?,
        };
        Some(Rooms::new(
            self.node.clone(),
            hub.clone(),
            self.registries.get(&hub.app.id)?.clone(),
        ))
    }

    /// Answers `req` when a custom route matches it; gives it back otherwise.
    pub(crate) async fn dispatch(
        &self,
        req: Request<Incoming>,
    ) -> Result<Response<Body>, Request<Incoming>> {
        if self.ws.is_empty() && self.http.is_empty() {
            return Err(req);
        }
        let path = req.uri().path();
        if ws::is_upgrade(&req) {
            let found = self
                .ws
                .iter()
                .find_map(|r| r.pattern.matches(path).map(|p| (r, p)));
            return match found {
                Some((route, params)) => Ok(self.upgrade(route, params, req).await),
                None => Err(req),
            };
        }
        let found = self.http.iter().find_map(|(method, pattern, handler)| {
            (method == req.method())
                .then(|| pattern.matches(path))
                .flatten()
                .map(|p| (handler, p))
        });
        if let Some((handler, params)) = found {
            return Ok(self.serve_http(handler, params, req).await);
        }
        if self.ws.iter().any(|r| r.pattern.matches(path).is_some()) {
            return Ok(http::response(
                StatusCode::UPGRADE_REQUIRED,
                "text/plain",
                "this is a WebSocket endpoint; connect with a WebSocket client\n",
            ));
        }
        Err(req)
    }

    async fn serve_http(
        &self,
        handler: &HttpHandler,
        params: super::route::Params,
        req: Request<Incoming>,
    ) -> Response<Body> {
        let (parts, body) = req.into_parts();
        let body = match Limited::new(body, self.config.max_request_bytes)
            .collect()
            .await
        {
            Ok(b) => b.to_bytes(),
            Err(_) => {
                return http::response(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "text/plain",
                    "request body too large or unreadable\n",
                );
            }
        };
        let request = HttpRequest {
            method: parts.method,
            path: parts.uri.path().to_string(),
            query: parts.uri.query().map(str::to_string),
            headers: parts.headers,
            params,
            body,
        };
        // A panicking page handler answers 500; the connection and the
        // server go on.
        match AssertUnwindSafe((handler.0)(request)).catch_unwind().await {
            Ok(response) => response,
            Err(_) => {
                tracing::error!("custom HTTP route handler panicked");
                http::response(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "text/plain",
                    "internal error\n",
                )
            }
        }
    }

    async fn upgrade(
        &self,
        r: &WsRoute,
        params: super::route::Params,
        mut req: Request<Incoming>,
    ) -> Response<Body> {
        let refuse = |status: StatusCode, message: String| {
            http::response(status, "text/plain; charset=utf-8", message + "\n")
        };
        let hub = r.rooms.hub().clone();
        let origin = req.headers().get(ORIGIN).and_then(|o| o.to_str().ok());
        if !r.route.origin_allowed(origin, &hub.app.allowed_origins) {
            hub.stats.error("origin_refused");
            return refuse(
                StatusCode::FORBIDDEN,
                format!("origin {:?} is not allowed here", origin.unwrap_or("")),
            );
        }
        if self.shutdown.is_cancelled() {
            return refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                "server is shutting down".into(),
            );
        }
        let request = UpgradeRequest {
            path: req.uri().path().to_string(),
            query: req.uri().query().map(str::to_string),
            headers: req.headers().clone(),
            params,
        };
        let user = match &r.route.authenticator {
            Some(auth) => match auth.authenticate(&request).await {
                Ok(user) => user,
                Err(refusal) => {
                    hub.stats.error("auth_refused");
                    let status =
                        StatusCode::from_u16(refusal.status).unwrap_or(StatusCode::FORBIDDEN);
                    return refuse(status, refusal.message);
                }
            },
            None => None,
        };
        let room = r
            .route
            .room_param
            .as_deref()
            .and_then(|p| request.params.get(p))
            .map(str::to_string);
        if let Some(room) = &room
            && let Err(e) = joinable(room, user.as_deref(), r.route.authorize_rooms.as_ref())
        {
            let status = match e {
                RoomError::InvalidName(_) => StatusCode::BAD_REQUEST,
                _ => {
                    hub.stats.error("room_refused");
                    StatusCode::FORBIDDEN
                }
            };
            return refuse(status, e.to_string());
        }
        let offered: Vec<&str> = req
            .headers()
            .get_all(SEC_WEBSOCKET_PROTOCOL)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        let protocol = r.route.select_protocol(&offered).map(str::to_string);
        let Some(slot) = hub.try_connect() else {
            hub.stats.error("over_connection_quota");
            return refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                "application is over its connection quota".into(),
            );
        };
        let handshake = match ws::handshake(&mut req, protocol.as_deref()) {
            Ok(h) => h,
            Err(response) => return *response,
        };
        let (mut handler, mut user, mut socket_id) = (r.route.handler.clone(), user, None);
        if let Some(app_handler) = &r.route.app_handler {
            let peer = req.extensions().get::<PeerAddr>().map(|p| p.0);
            match app_handler.connect(&request, peer).await {
                Ok(accepted) => {
                    user = accepted.user().map(str::to_string);
                    socket_id = Some(accepted.socket_id().clone());
                    handler = app_handler.handler_for(accepted);
                }
                Err((status, message)) => return refuse(status, message),
            }
        }
        let session = Session {
            handler,
            socket_id,
            rooms: r.rooms.clone(),
            authorize: r.route.authorize_rooms.clone(),
            hub,
            request,
            user,
            room,
            protocol,
            max_message: r
                .route
                .max_message_bytes
                .unwrap_or(self.config.max_message_bytes),
            frame_size: r.route.frame_size,
            outbox_limit: self.config.outbox_limit,
            write_timeout: Duration::from_secs(self.config.write_timeout),
            shutdown: self.shutdown.clone(),
            slot,
        };
        let upgrade = handshake.upgrade;
        self.sessions.spawn(async move {
            match upgrade.await {
                Ok(upgraded) => {
                    let socket = ws::server_with(upgraded, session.max_message, session.frame_size);
                    session.run(socket).await;
                }
                Err(e) => tracing::debug!(error = %e, "upgrade failed"),
            }
        });
        handshake.response
    }
}

/// Everything one accepted connection needs once the upgrade completes.
struct Session {
    handler: Handler,
    /// Given before the upgrade (handler routes tell the app at connect).
    socket_id: Option<SocketId>,
    rooms: Rooms,
    authorize: Option<RoomAuthorizer>,
    hub: Arc<Hub>,
    request: UpgradeRequest,
    user: Option<String>,
    room: Option<String>,
    protocol: Option<String>,
    max_message: usize,
    frame_size: Option<usize>,
    outbox_limit: usize,
    write_timeout: Duration,
    shutdown: CancellationToken,
    /// The connection's place in the app's quota: released when the
    /// session ends or unwinds.
    slot: ConnectionSlot,
}

impl Session {
    async fn run(self, socket: ws::Socket) {
        let _slot = self.slot;
        let core = match self.socket_id {
            Some(id) => Connection::with_id(id, &RAW_WIRE, self.outbox_limit),
            None => Connection::new(&RAW_WIRE, self.outbox_limit),
        };
        let registry = self.rooms.registry().clone();
        registry.insert(&core);
        let user = self.user.clone();
        let conn = Conn::new(
            core.clone(),
            self.rooms,
            self.authorize,
            self.user,
            self.request,
            self.protocol,
        );
        if let Some(user) = &user {
            self.hub.add_user_connection(user, &core);
            let channel = user_channel(user);
            match ChannelSpec::parse(&channel) {
                Ok(spec) => {
                    let _ = conn.join_spec(&spec);
                }
                Err(e) => {
                    tracing::warn!(user = %user, error = %e, "user id cannot name a channel; to_user will not reach it")
                }
            }
        }
        if let Some(room) = &self.room {
            // Checked before the upgrade; cannot fail on an open connection.
            let _ = conn.join(room);
        }
        handler::drive(
            socket,
            conn.clone(),
            &self.handler,
            self.shutdown,
            self.write_timeout,
        )
        .await;
        // `drive` ended the connection and left its rooms.
        if let Some(user) = &user {
            self.hub.remove_user_connection(user, &core);
        }
        registry.remove(&core.socket_id);
    }
}
