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
use hyper::header::{CONTENT_TYPE, COOKIE, HeaderValue, ORIGIN};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::adapter::redis::{ClusterSettings, RedisAdapter};
use crate::config::{Config, ServerConfig};
use crate::core::adapter::{Adapter, LocalAdapter};
use crate::core::hub::Hub;
use crate::core::node::Node;
use crate::http_api::{self, ApiRequest};
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
            config: server_config,
            shutdown,
            sessions,
            ready: AtomicBool::new(true),
            socketio,
            custom,
            tls,
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
        let ingress: Vec<_> = state
            .node
            .hubs()
            .iter()
            .filter(|hub| hub.app.redis_url.is_some())
            .map(|hub| tokio::spawn(crate::ingress::redis::run(hub.clone())))
            .collect();
        tokio::pin!(stop);
        loop {
            tokio::select! {
                () = &mut stop => break,
                accepted = self.listener.accept() => match accepted {
                    Ok((stream, _)) => {
                        let _ = stream.set_nodelay(true);
                        let state = state.clone();
                        tokio::spawn(async move {
                            match state.tls.clone() {
                                None => serve_http(state, stream).await,
                                Some(tls) => match tokio::time::timeout(Duration::from_secs(10), tls.accept(stream)).await {
                                    Ok(Ok(stream)) => serve_http(state, stream).await,
                                    Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
                                    Err(_) => tracing::debug!("TLS handshake timed out"),
                                },
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
        state.node.adapter().shutdown().await;
        sweeper.abort();
        ingress.iter().for_each(|task| task.abort());
    }
}

/// Serves HTTP/1.1 (with upgrades) on one accepted connection, plain or TLS.
async fn serve_http<I>(state: Arc<State>, io: I)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |req| handle(state.clone(), req));
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(30))
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    if let Err(e) = conn.await {
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

async fn handle(state: Arc<State>, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
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
        (&Method::GET, "/ready") => {
            let adapter = state.node.adapter();
            let redis_ok = state.node.hubs().iter().all(|h| h.stats.ingress_healthy());
            let (status, text) = match (ready, adapter.healthy(), redis_ok) {
                (false, _, _) => (StatusCode::SERVICE_UNAVAILABLE, "shutting_down"),
                (true, false, _) => (StatusCode::SERVICE_UNAVAILABLE, "adapter_unavailable"),
                (true, true, false) => (StatusCode::SERVICE_UNAVAILABLE, "redis_unavailable"),
                (true, true, true) => (StatusCode::OK, "ready"),
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
                if let (Some(hub), Ok(())) = (&hub, &verdict) {
                    hub.disconnect();
                }
                return;
            }
        };
        let mut socket =
            match ws::LeanSocket::from_upgraded(upgraded, state.config.max_message_bytes) {
                Ok(socket) => socket,
                Err(_) => {
                    // The listener only accepts TCP (or TLS over TCP) streams.
                    tracing::warn!("upgraded connection is neither TCP nor TLS over TCP");
                    if let (Some(hub), Ok(())) = (&hub, &verdict) {
                        hub.disconnect();
                    }
                    return;
                }
            };
        match (verdict, hub) {
            (Ok(()), Some(hub)) => {
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
            (Ok(()), None) => {}
        }
    });
    handshake.response
}
