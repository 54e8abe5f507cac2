//! The network edge: accepts TCP connections, serves HTTP/1.1 with hyper,
//! routes WebSocket upgrades to front-ends and everything else to the HTTP
//! API and the operational endpoints, and shuts down gracefully.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue, ORIGIN};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{Config, ServerConfig};
use crate::core::adapter::{Adapter, LocalAdapter};
use crate::core::hub::Hub;
use crate::core::node::Node;
use crate::http_api::{self, ApiRequest};
use crate::pusher::{protocol as pusher_wire, session};
use crate::{custom, metrics, ws};

type Body = Full<Bytes>;

/// Shared by every request handler.
struct State {
    node: Arc<Node>,
    config: Arc<ServerConfig>,
    /// Cancelled when shutdown begins; sessions watch it.
    shutdown: CancellationToken,
    /// WebSocket sessions, awaited (bounded) at shutdown.
    sessions: TaskTracker,
    ready: AtomicBool,
    /// Custom WebSocket and HTTP routes (the library API).
    custom: custom::mount::Mount,
}

/// A bound, not yet running server.
pub struct Server {
    listener: TcpListener,
    state: Arc<State>,
}

impl Server {
    /// Binds the listener and builds the node with the local adapter.
    pub async fn bind(config: Config) -> std::io::Result<Server> {
        Server::bind_with_adapter(config, Arc::new(LocalAdapter)).await
    }

    /// Binds the listener with the given cross-node adapter.
    pub async fn bind_with_adapter(
        config: Config,
        adapter: Arc<dyn Adapter>,
    ) -> std::io::Result<Server> {
        let routes = custom::Routes::from_config(&config.server)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        Server::bind_routes(config, adapter, routes).await
    }

    /// A server with custom routes: see [`custom::Builder`].
    pub fn builder(config: Config) -> custom::Builder {
        custom::Builder::new(config)
    }

    pub(crate) async fn bind_routes(
        config: Config,
        adapter: Arc<dyn Adapter>,
        routes: custom::Routes,
    ) -> std::io::Result<Server> {
        let node = Arc::new(Node::new(config.apps, adapter));
        let server_config = Arc::new(config.server);
        let (shutdown, sessions) = (CancellationToken::new(), TaskTracker::new());
        let custom = custom::mount::Mount::new(
            routes,
            node.clone(),
            server_config.clone(),
            shutdown.clone(),
            sessions.clone(),
        )
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        let listener = TcpListener::bind((server_config.host.as_str(), server_config.port)).await?;
        let state = Arc::new(State {
            node,
            config: server_config,
            shutdown,
            sessions,
            ready: AtomicBool::new(true),
            custom,
        });
        Ok(Server { listener, state })
    }

    /// Rooms of app `app_id` (the first app when `None`), to broadcast from
    /// outside a handler.
    pub fn rooms(&self, app_id: Option<&str>) -> Option<custom::Rooms> {
        self.state.custom.rooms(app_id)
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    pub fn node(&self) -> &Arc<Node> {
        &self.state.node
    }

    /// Serves until `stop` resolves, then closes every WebSocket with 4200
    /// (clients reconnect elsewhere) and waits up to `shutdown_grace`.
    pub async fn run(self, stop: impl Future<Output = ()>) {
        let state = self.state;
        let sweeper = {
            let node = state.node.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(60));
                loop {
                    tick.tick().await;
                    node.hubs().iter().for_each(|h| h.sweep_cache());
                }
            })
        };
        tokio::pin!(stop);
        loop {
            tokio::select! {
                () = &mut stop => break,
                accepted = self.listener.accept() => match accepted {
                    Ok((stream, _)) => {
                        let _ = stream.set_nodelay(true);
                        let state = state.clone();
                        tokio::spawn(async move {
                            let service = service_fn(move |req| handle(state.clone(), req));
                            let conn = hyper::server::conn::http1::Builder::new()
                                .timer(TokioTimer::new())
                                .header_read_timeout(Duration::from_secs(30))
                                .serve_connection(TokioIo::new(stream), service)
                                .with_upgrades();
                            if let Err(e) = conn.await {
                                tracing::debug!(error = %e, "http connection ended with an error");
                            }
                        });
                    }
                    Err(e) => {
                        // Out of file descriptors and the like: back off, keep serving.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
        }
        tracing::info!("shutting down: closing connections with 4200");
        state.ready.store(false, Ordering::SeqCst);
        drop(self.listener);
        state.shutdown.cancel();
        state.sessions.close();
        let grace = Duration::from_secs(state.config.shutdown_grace);
        if tokio::time::timeout(grace, state.sessions.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                remaining = state.sessions.len(),
                "grace period over; exiting anyway"
            );
        }
        sweeper.abort();
    }
}

fn respond(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Body> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

fn json(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    respond(status, "application/json", value.to_string())
}

fn json_error(status: StatusCode, message: &str) -> Response<Body> {
    json(status, &serde_json::json!({ "error": message }))
}

async fn handle(state: Arc<State>, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    if let Some(key) = req.uri().path().strip_prefix("/app/") {
        let key = key.to_string();
        return Ok(pusher_upgrade(&state, req, &key));
    }
    let req = match state.custom.dispatch(req).await {
        Ok(response) => return Ok(response),
        Err(req) => req,
    };
    let path = req.uri().path();
    let ready = state.ready.load(Ordering::SeqCst);
    Ok(match (req.method(), path) {
        (&Method::GET, "/") => respond(StatusCode::OK, "text/plain", "OK"),
        (&Method::GET, "/up") => json(StatusCode::OK, &serde_json::json!({ "status": "ok" })),
        (&Method::GET, "/ready") => {
            let adapter = state.node.adapter();
            let (status, text) = match (ready, adapter.healthy()) {
                (false, _) => (StatusCode::SERVICE_UNAVAILABLE, "shutting_down"),
                (true, false) => (StatusCode::SERVICE_UNAVAILABLE, "adapter_unavailable"),
                (true, true) => (StatusCode::OK, "ready"),
            };
            json(
                status,
                &serde_json::json!({ "status": text, "adapter": adapter.name() }),
            )
        }
        (&Method::GET, "/metrics") => respond(
            StatusCode::OK,
            "text/plain; version=0.0.4",
            metrics::render(&state.node, ready),
        ),
        (_, p) if p.starts_with("/apps/") || p.starts_with("/users/") => api(&state, req).await,
        _ => json_error(StatusCode::NOT_FOUND, "not found"),
    })
}

async fn api(state: &State, req: Request<Incoming>) -> Response<Body> {
    let (parts, body) = req.into_parts();
    let body = match Limited::new(body, state.config.max_request_bytes)
        .collect()
        .await
    {
        Ok(collected) => collected.to_bytes(),
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            return json_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!(
                    "request body exceeds {} bytes",
                    state.config.max_request_bytes
                ),
            );
        }
        Err(_) => return json_error(StatusCode::BAD_REQUEST, "could not read the request body"),
    };
    let request = ApiRequest {
        method: parts.method.as_str(),
        path: parts.uri.path(),
        query: parts.uri.query().unwrap_or(""),
        body: &body,
    };
    match http_api::handle(&state.node, &request) {
        Ok(value) => json(StatusCode::OK, &value),
        Err(e) => json_error(
            StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST),
            &e.message,
        ),
    }
}

/// Why a Pusher connection is refused right after the upgrade: pusher-js
/// only understands refusals as `pusher:error` plus a close code.
fn refusal(
    state: &State,
    hub: Option<&Arc<Hub>>,
    origin: Option<&str>,
) -> Result<(), (u16, String)> {
    let Some(hub) = hub else {
        return Err((4001, "application does not exist: check the app key".into()));
    };
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
    if !hub.try_connect() {
        hub.stats.error("over_connection_quota");
        return Err((4004, "application is over its connection quota".into()));
    }
    Ok(())
}

fn pusher_upgrade(state: &Arc<State>, mut req: Request<Incoming>, key: &str) -> Response<Body> {
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
    let hub = state.node.by_key(key).cloned();
    let origin = req.headers().get(ORIGIN).and_then(|o| o.to_str().ok());
    let verdict = refusal(state, hub.as_ref(), origin);
    let state = state.clone();
    state.sessions.clone().spawn(async move {
        let upgraded = match handshake.upgrade.await {
            Ok(u) => u,
            Err(e) => {
                tracing::debug!(error = %e, "upgrade failed");
                if let (Some(hub), Ok(())) = (&hub, &verdict) {
                    hub.disconnect();
                }
                return;
            }
        };
        let mut socket = ws::server(upgraded, state.config.max_message_bytes);
        match (verdict, hub) {
            (Ok(()), Some(hub)) => {
                session::run(
                    socket,
                    state.node.clone(),
                    hub,
                    state.config.clone(),
                    state.shutdown.clone(),
                )
                .await;
            }
            (Err((code, message)), _) => {
                let timeout = Duration::from_secs(2);
                let _ = ws::send_batch(
                    &mut socket,
                    [pusher_wire::error(Some(code), &message)],
                    timeout,
                )
                .await;
                ws::close(&mut socket, code, "connection refused", timeout).await;
            }
            // `refusal` never accepts without a hub.
            (Ok(()), None) => {}
        }
    });
    handshake.response
}
