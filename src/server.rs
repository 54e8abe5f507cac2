//! The network edge: accepts TCP connections, serves HTTP/1.1 with hyper,
//! routes WebSocket upgrades to front-ends and everything else to the HTTP
//! API and the operational endpoints, and shuts down gracefully.

use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, COOKIE, HeaderValue, ORIGIN};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::adapter::redis::{ClusterSettings, RedisAdapter};
use crate::config::{Config, ServerConfig};
use crate::core::adapter::{Adapter, LocalAdapter};
use crate::core::hub::{ConnectionSlot, Hub};
use crate::core::node::Node;
use crate::http_api::{self, ApiRequest};
use crate::limits::{ConnectionLimiter, Guarded, RateLimiter};
use crate::pusher::{protocol as pusher_wire, session};
use crate::socketio::{SocketIoFrontend, SocketIoService};
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
    /// One task per accepted connection (its HTTP/1.1 exchange, up to an
    /// upgrade), awaited (bounded) at shutdown.
    connections: TaskTracker,
    /// Concurrent connections per client IP (`max_connections_per_ip`).
    per_ip: ConnectionLimiter,
    /// API requests per second per client IP (`api_rate_per_ip`).
    api_ip_rate: RateLimiter<IpAddr>,
    /// API requests per second per app (`max_api_rate`).
    api_app_rate: RateLimiter<String>,
    ready: AtomicBool,
    /// Echo's `socket.io` connector, for the first app that enables it.
    socketio: Option<(Arc<Hub>, SocketIoService)>,
    /// Custom WebSocket and HTTP routes (the library API).
    custom: custom::mount::Mount,
    /// TLS termination, when a certificate is configured.
    tls: Option<tokio_rustls::TlsAcceptor>,
}

/// A bound, not yet running server.
pub struct Server {
    listener: TcpListener,
    /// `/metrics` alone, when `metrics_listen` is set.
    metrics_listener: Option<TcpListener>,
    state: Arc<State>,
}

impl Server {
    /// Binds the listener and builds the node with the configured adapter.
    pub async fn bind(config: Config) -> std::io::Result<Server> {
        let adapter: Arc<dyn Adapter> =
            match (config.cluster.adapter.as_str(), &config.cluster.redis_url) {
                ("redis", Some(url)) => RedisAdapter::new(ClusterSettings {
                    url: url.clone(),
                    prefix: config.cluster.prefix.clone(),
                    node_timeout: Duration::from_secs(config.cluster.node_timeout),
                    query_timeout: Duration::from_millis(config.cluster.query_timeout_ms),
                }),
                _ => Arc::new(LocalAdapter),
            };
        Server::bind_with_adapter(config, adapter).await
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
        crate::http_api::echo::started();
        let listener = listen(&config.server.host, config.server.port).await?;
        let metrics_listener = match &config.server.metrics_listen {
            Some(addr) => Some(TcpListener::bind(addr.as_str()).await?),
            None => None,
        };
        let node = Node::new(config.apps, adapter);
        node.adapter().ready().await;
        // One fan-out lane per core: API triggers answer once queued.
        node.start_lanes(std::thread::available_parallelism().map_or(2, |n| n.get()));
        let tls = match (&config.server.tls_cert, &config.server.tls_key) {
            (Some(cert), Some(key)) => Some(
                crate::tls::acceptor(cert, key, config.server.tls_chain.as_deref())
                    .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?,
            ),
            _ => None,
        };
        let server_config = Arc::new(config.server);
        let (shutdown, sessions) = (CancellationToken::new(), TaskTracker::new());
        let socketio = node.hubs().iter().find(|h| h.app.socketio).map(|hub| {
            let service = SocketIoFrontend::service(
                node.clone(),
                hub.clone(),
                &server_config,
                shutdown.clone(),
            );
            (hub.clone(), service)
        });
        let custom = custom::mount::Mount::new(
            routes,
            node.clone(),
            server_config.clone(),
            shutdown.clone(),
            sessions.clone(),
        )
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        let state = Arc::new(State {
            node,
            config: server_config.clone(),
            shutdown,
            sessions,
            connections: TaskTracker::new(),
            per_ip: ConnectionLimiter::new(server_config.max_connections_per_ip),
            api_ip_rate: RateLimiter::default(),
            api_app_rate: RateLimiter::default(),
            ready: AtomicBool::new(true),
            socketio,
            custom,
            tls,
        });
        Ok(Server {
            listener,
            metrics_listener,
            state,
        })
    }

    /// Rooms of app `app_id` (the first app when `None`), to broadcast from
    /// outside a handler.
    pub fn rooms(&self, app_id: Option<&str>) -> Option<custom::Rooms> {
        self.state.custom.rooms(app_id)
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The address of the separate `/metrics` listener, if configured.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener
            .as_ref()
            .and_then(|l| l.local_addr().ok())
    }

    pub fn node(&self) -> &Arc<Node> {
        &self.state.node
    }

    /// Serves until `stop` resolves, then closes every WebSocket with 4200
    /// (clients reconnect elsewhere) and waits up to `shutdown_grace`.
    pub async fn run(self, stop: impl Future<Output = ()>) {
        let state = self.state;
        // Background tasks are the node's: tracked, cancelled and awaited
        // (bounded) at the end of shutdown.
        let node = state.node.clone();
        state.node.spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(60));
            loop {
                tick.tick().await;
                node.hubs().iter().for_each(|h| h.sweep_cache());
            }
        });
        for hub in state
            .node
            .hubs()
            .iter()
            .filter(|h| h.app.redis_url.is_some())
        {
            state
                .node
                .spawn(crate::ingress::redis::run(state.node.clone(), hub.clone()));
        }
        if let Some(listener) = self.metrics_listener {
            let (node, config) = (state.node.clone(), state.config.clone());
            let ready_state = state.clone();
            let ready = move || ready_state.ready.load(Ordering::SeqCst);
            state
                .node
                .spawn(metrics::serve(listener, node, config, ready));
        }
        tokio::pin!(stop);
        loop {
            tokio::select! {
                () = &mut stop => break,
                accepted = self.listener.accept() => match accepted {
                    Ok((stream, peer)) => accept(&state, stream, peer),
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
        state.connections.close();
        let grace = Duration::from_secs(state.config.shutdown_grace);
        let all_done = async {
            state.connections.wait().await;
            state.sessions.wait().await;
        };
        if tokio::time::timeout(grace, all_done).await.is_err() {
            tracing::warn!(
                sessions = state.sessions.len(),
                connections = state.connections.len(),
                "grace period over; exiting anyway"
            );
        }
        // Leaves the cluster (its writer task still runs), then stops the
        // lanes, sweeper, ingestion and adapter tasks.
        state.node.adapter().shutdown().await;
        let left = state.node.stop_tasks(Duration::from_secs(2)).await;
        if left > 0 {
            tracing::warn!(left, "background tasks did not stop in time");
        }
    }
}

/// Starts serving one accepted connection in its own (tracked) task, or
/// refuses it when its IP is over `max_connections_per_ip`.
fn accept(state: &Arc<State>, stream: TcpStream, peer: SocketAddr) {
    let _ = stream.set_nodelay(true);
    let guard = match state.per_ip.acquire(peer.ip()) {
        Ok(guard) => guard,
        Err(_) => {
            state.connections.spawn(crate::limits::refuse_over_limit(
                stream,
                state.config.max_connections_per_ip,
            ));
            return;
        }
    };
    let state = state.clone();
    let handshake = Duration::from_secs(state.config.handshake_timeout);
    let deadline = Instant::now() + handshake;
    state.connections.clone().spawn(async move {
        let io = Guarded { io: stream, guard };
        match state.tls.clone() {
            None => serve_http(state, io, peer.ip(), handshake).await,
            Some(tls) => match tokio::time::timeout(handshake, tls.accept(io)).await {
                Ok(Ok(io)) => {
                    // The request head must arrive within what is left of
                    // the handshake time (with a floor, for keep-alive
                    // requests that reuse the setting).
                    let left = deadline
                        .saturating_duration_since(Instant::now())
                        .max(Duration::from_secs(1));
                    serve_http(state, io, peer.ip(), left).await;
                }
                Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!("TLS handshake timed out"),
            },
        }
    });
}

/// Serves HTTP/1.1 (with upgrades) on one accepted connection, plain or TLS.
/// A request head must be complete within `head_timeout` and fit in
/// `max_header_bytes` (hyper answers 431 otherwise); at shutdown the
/// connection finishes its current request and closes.
async fn serve_http<I>(state: Arc<State>, io: I, peer: IpAddr, head_timeout: Duration)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let shutdown = state.shutdown.clone();
    let max_head = state.config.max_header_bytes;
    let service = service_fn(move |req| handle(state.clone(), peer, req));
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(head_timeout)
        .max_buf_size(max_head)
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    tokio::pin!(conn);
    let result = tokio::select! {
        result = conn.as_mut() => result,
        () = shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, "http connection ended with an error");
    }
}

/// Binds with a deep accept queue (4096): a reconnect storm after a
/// restart arrives all at once, and the default backlog drops SYNs.
async fn listen(host: &str, port: u16) -> std::io::Result<TcpListener> {
    let mut last = None;
    for addr in tokio::net::lookup_host((host, port)).await? {
        let socket = if addr.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        match socket.bind(addr).and_then(|()| socket.listen(4096)) {
            Ok(listener) => return Ok(listener),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::AddrNotAvailable,
            "no address to listen on",
        )
    }))
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

async fn handle(
    state: Arc<State>,
    peer: IpAddr,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    if let Some(key) = req.uri().path().strip_prefix("/app/") {
        let key = key.to_string();
        return Ok(pusher_upgrade(&state, req, &key));
    }
    let path = req.uri().path();
    if path == "/socket.io" || path.starts_with("/socket.io/") {
        return Ok(socketio(&state, req).await);
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
        (&Method::GET, "/ready") => readiness(&state.node, ready),
        (&Method::GET, "/metrics") => metrics_endpoint(&state, &req, false),
        (_, p) if p.starts_with("/apps/") || p.starts_with("/users/") => {
            if !state.api_ip_rate.check(&peer, state.config.api_rate_per_ip) {
                return Ok(json_error(
                    StatusCode::TOO_MANY_REQUESTS,
                    &format!(
                        "too many API requests from your address (at most {} per second); slow down",
                        state.config.api_rate_per_ip
                    ),
                ));
            }
            api(&state, req).await
        }
        _ => json_error(StatusCode::NOT_FOUND, "not found"),
    })
}

/// `/metrics` on the public port (see [`metrics::endpoint`]).
fn metrics_endpoint(state: &State, req: &Request<Incoming>, dedicated: bool) -> Response<Body> {
    metrics::endpoint(
        &state.node,
        state.ready.load(Ordering::SeqCst),
        &state.config,
        req,
        dedicated,
    )
}

/// `/ready`: whether *this node* can serve its clients. A shared Redis
/// (cluster adapter or Laravel ingestion) going away must not fail every
/// node's readiness at once — the load balancer would then drop the whole
/// fleet while each node still serves its own clients perfectly well. So
/// dependencies are reported in the body (and in `/metrics`) for alerting,
/// and only shutting down answers 503.
fn readiness(node: &crate::core::node::Node, ready: bool) -> Response<Body> {
    let adapter = node.adapter();
    let adapter_healthy = adapter.healthy();
    let ingestion: serde_json::Map<String, serde_json::Value> = node
        .hubs()
        .iter()
        .filter(|h| h.app.redis_url.is_some())
        .map(|h| {
            let state = if h.stats.ingress_connected() {
                "connected"
            } else {
                "unavailable"
            };
            (h.app.id.clone(), state.into())
        })
        .collect();
    let ingestion_ok = ingestion.values().all(|v| v == "connected");
    let (status, text) = if ready {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting_down")
    };
    json(
        status,
        &serde_json::json!({
            "status": text,
            "degraded": !(adapter_healthy && ingestion_ok),
            "adapter": adapter.name(),
            "adapter_healthy": adapter_healthy,
            "redis_ingestion": ingestion,
        }),
    )
}

/// Hands a `/socket.io/` request to engineioxide, answering CORS the way
/// engine.io 3 did for laravel-echo-server (the page and the socket are on
/// different origins, and polling sends cookies).
async fn socketio(state: &State, req: Request<Incoming>) -> Response<Body> {
    let Some((hub, service)) = &state.socketio else {
        return json_error(
            StatusCode::NOT_FOUND,
            "Socket.IO is not enabled for any app",
        );
    };
    let origin = req.headers().get(ORIGIN).cloned();
    let allowed = hub
        .app
        .origin_allowed(origin.as_ref().and_then(|o| o.to_str().ok()));
    if !allowed {
        hub.stats.error("origin_refused");
        return json_error(StatusCode::FORBIDDEN, "origin not allowed for this app");
    }
    let cors = |headers: &mut hyper::HeaderMap| {
        if let Some(origin) = &origin {
            headers.insert(hyper::header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
            headers.insert(
                hyper::header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
    };
    if req.method() == Method::OPTIONS {
        let mut response = respond(StatusCode::OK, "text/plain", "");
        let h = response.headers_mut();
        cors(h);
        h.insert(
            hyper::header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("GET, POST, OPTIONS"),
        );
        h.insert(
            hyper::header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static("Content-Type"),
        );
        return response;
    }
    let mut service = service.clone();
    let response = match tower_service::Service::call(&mut service, req).await {
        Ok(r) => r,
        Err(never) => match never {},
    };
    let (mut parts, body) = response.into_parts();
    let bytes = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => return json_error(StatusCode::BAD_GATEWAY, "Socket.IO transport error"),
    };
    cors(&mut parts.headers);
    Response::from_parts(parts, Full::new(bytes))
}

/// The API with the configured CORS headers (laravel-echo-server's
/// `apiOriginAllow`), preflights included.
async fn api(state: &State, req: Request<Incoming>) -> Response<Body> {
    let Some(cors) = &state.config.api_cors else {
        return api_call(state, req).await;
    };
    let mut response = if req.method() == Method::OPTIONS {
        let mut r = respond(StatusCode::NO_CONTENT, "text/plain", "");
        *r.status_mut() = StatusCode::NO_CONTENT;
        r
    } else {
        api_call(state, req).await
    };
    let h = response.headers_mut();
    for (name, value) in [
        (
            hyper::header::ACCESS_CONTROL_ALLOW_ORIGIN,
            &cors.allow_origin,
        ),
        (
            hyper::header::ACCESS_CONTROL_ALLOW_METHODS,
            &cors.allow_methods,
        ),
        (
            hyper::header::ACCESS_CONTROL_ALLOW_HEADERS,
            &cors.allow_headers,
        ),
    ] {
        if let Ok(v) = HeaderValue::from_str(value)
            && !value.is_empty()
        {
            h.insert(name, v);
        }
    }
    response
}

async fn api_call(state: &State, req: Request<Incoming>) -> Response<Body> {
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
    let bearer = parts
        .headers
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim);
    let request = ApiRequest {
        bearer,
        method: parts.method.as_str(),
        path: parts.uri.path(),
        query: parts.uri.query().unwrap_or(""),
        body: &body,
        app_rate: Some(&state.api_app_rate),
    };
    match http_api::handle(&state.node, &request).await {
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
) -> Result<ConnectionSlot, (u16, String)> {
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
    hub.try_connect().ok_or_else(|| {
        hub.stats.error("over_connection_quota");
        (4004, "application is over its connection quota".into())
    })
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
