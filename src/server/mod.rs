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
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{Config, ServerConfig};
use crate::core::adapter::Adapter;
use crate::core::hub::Hub;
use crate::core::node::Node;
use crate::limits::{ConnectionLimiter, Guarded, RateLimiter};
use crate::pusher::fallback::{self, Fallback};
use crate::socketio::{SocketIoFrontend, SocketIoService};
use crate::{custom, metrics};

mod endpoints;
mod pusher_upgrade;

use endpoints::{api, json, json_error, metrics_endpoint, readiness, respond, socketio};
use pusher_upgrade::pusher_upgrade;

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
    /// The live app set and reloads (see [`crate::apps`]).
    control: Arc<crate::apps::Control>,
    /// pusher-js's HTTP fallback transports (`http_fallback_path`).
    fallback: Arc<Fallback>,
    /// The live dashboard (`dashboard = true`).
    dashboard: Option<Arc<crate::dashboard::Dashboard>>,
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
        let adapter = crate::adapter::from_config(&config.cluster)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
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
        mut routes: custom::Routes,
    ) -> std::io::Result<Server> {
        // `[[routes]]`: WebSocket routes handled by the app over HTTP.
        routes.ws.extend(
            custom::app_handlers::routes(&config.routes)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?,
        );
        crate::http_api::echo::started();
        let listener = listen(&config.server.host, config.server.port).await?;
        let metrics_listener = match &config.server.metrics_listen {
            Some(addr) => Some(TcpListener::bind(addr.as_str()).await?),
            None => None,
        };
        let running = config.clone();
        let node = Node::new(config.apps, adapter);
        node.adapter().ready().await;
        // One fan-out lane per core: API triggers answer once queued.
        node.start_lanes(std::thread::available_parallelism().map_or(2, |n| n.get()));
        let webhooks = crate::webhooks::start(&node);
        let (tls, cert_swap) = match (&config.server.tls_cert, &config.server.tls_key) {
            (Some(cert), Some(key)) => {
                crate::tls::acceptor_with_swap(cert, key, config.server.tls_chain.as_deref())
                    .map(|(acceptor, swap)| (Some(acceptor), Some(swap)))
                    .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?
            }
            _ => (None, None),
        };
        let control = crate::apps::Control::new(node.clone(), running, cert_swap)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        control.set_webhooks(webhooks);
        control.load_database().await;
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
        let dashboard = server_config
            .dashboard
            .then(|| crate::dashboard::Dashboard::start(&node));
        let link = crate::adapter::link_from_config(&config.cluster, &node);
        let fallback = Fallback::new(
            node.clone(),
            server_config.clone(),
            shutdown.clone(),
            sessions.clone(),
            link,
        );
        let state = Arc::new(State {
            fallback,
            dashboard,
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
            control,
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

    /// Reloads and the live app set: hand it a new config (SIGHUP), the
    /// log filter changer, ...
    pub fn control(&self) -> &Arc<crate::apps::Control> {
        &self.state.control
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
        // Laravel Redis ingestion per app, and the apps database: kept in
        // step with the app set by the control.
        state.control.start_ingestion();
        state.control.start_database();
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
            if let Some(answer) =
                crate::limits::refuse_over_limit(stream, state.config.max_connections_per_ip)
            {
                state.connections.spawn(answer);
            }
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
    let service = service_fn(move |req: Request<Incoming>| {
        let state = state.clone();
        async move {
            if state.fallback.matches(req.uri().path()) {
                let ready = state.ready.load(Ordering::SeqCst);
                return Ok::<_, Infallible>(state.fallback.handle(req, ready).await);
            }
            let response = handle(state, peer, req).await?;
            Ok(response.map(fallback::Body::Left))
        }
    });
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

async fn handle(
    state: Arc<State>,
    peer: IpAddr,
    mut req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    if let Some(key) = req.uri().path().strip_prefix("/app/") {
        let key = key.to_string();
        return Ok(pusher_upgrade(&state, req, &key));
    }
    let path = req.uri().path();
    if path == "/socket.io" || path.starts_with("/socket.io/") {
        return Ok(socketio(&state, req).await);
    }
    if let Some(dashboard) = &state.dashboard
        && (path == "/dashboard" || path.starts_with("/dashboard/"))
    {
        let ctx = crate::dashboard::Context {
            node: &state.node,
            config: &state.config,
            shutdown: &state.shutdown,
            sessions: &state.sessions,
            tls: state.tls.is_some(),
            peer,
        };
        return Ok(dashboard.handle(ctx, req).await);
    }
    // Handler routes forward the client's address (`X-Forwarded-For`).
    req.extensions_mut()
        .insert(custom::app_handlers::PeerAddr(peer));
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
