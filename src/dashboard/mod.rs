//! The live dashboard at `/dashboard` (off unless `dashboard = true`):
//! a page served from the binary, a JSON snapshot, a live WebSocket that
//! pushes each app's figures every second (and its debug console's events),
//! and a form that sends a test event.
//!
//! - [`auth`]: who may look (an app's key and secret, or the operators'
//!   `dashboard_token`), session cookies, CSRF.
//! - [`snapshot`]: what is shown, read from counters the server keeps
//!   anyway, and the per-second rate history.
//! - [`console`]: the debug console's event log, read from the core's
//!   happenings stream only while someone watches it.
//! - [`live`]: the live WebSocket.
//!
//! Endpoints (all under `/dashboard`): `GET /` the page, `GET /app.js`,
//! `GET /app.css`, `POST /login`, `POST /logout`, `GET /session`,
//! `GET /snapshot?app=ID`, `GET /live?app=ID` (WebSocket), `POST /event`.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::ServerConfig;
use crate::core::hub::Hub;
use crate::core::node::Node;

pub mod auth;
pub mod console;
mod live;
pub mod snapshot;

use auth::{Scope, Session};

const PAGE: &str = include_str!("page.html");
const SCRIPT: &str = include_str!("app.js");
const STYLE: &str = include_str!("app.css");

/// Live dashboard sockets per node.
pub const MAX_VIEWERS: usize = 32;
/// How long a snapshot waits for the other cluster nodes' channels.
const CLUSTER_WAIT: Duration = Duration::from_millis(800);

type Body = Full<Bytes>;

/// The dashboard of one server (present only when enabled).
pub struct Dashboard {
    history: Arc<snapshot::History>,
    started: Instant,
    viewers: Arc<std::sync::atomic::AtomicUsize>,
    failures: auth::Failures,
}

/// What a dashboard request needs from the server.
pub struct Context<'a> {
    pub node: &'a Arc<Node>,
    pub config: &'a Arc<ServerConfig>,
    pub shutdown: &'a CancellationToken,
    pub sessions: &'a TaskTracker,
    /// Whether the page was reached over TLS (cookies get `Secure`).
    pub tls: bool,
    pub peer: IpAddr,
}

impl Dashboard {
    /// Starts the rate sampler (a node task) and returns the dashboard.
    pub fn start(node: &Arc<Node>) -> Arc<Dashboard> {
        let history = Arc::new(snapshot::History::default());
        node.spawn(history.clone().run(Arc::downgrade(node)));
        Arc::new(Dashboard {
            history,
            started: Instant::now(),
            viewers: Default::default(),
            failures: auth::Failures::default(),
        })
    }

    /// Serves one request under `/dashboard`.
    pub async fn handle(
        self: &Arc<Self>,
        ctx: Context<'_>,
        req: Request<Incoming>,
    ) -> Response<Body> {
        let path = req.uri().path().to_string();
        let sub = path.strip_prefix("/dashboard").unwrap_or("");
        let method = req.method().clone();
        match (&method, sub) {
            (&Method::GET, "" | "/") => page(PAGE, "text/html; charset=utf-8"),
            (&Method::GET, "/app.js") => page(SCRIPT, "text/javascript; charset=utf-8"),
            (&Method::GET, "/app.css") => page(STYLE, "text/css; charset=utf-8"),
            (&Method::POST, "/login") => self.login(&ctx, req).await,
            (&Method::POST, "/logout") => logout(&ctx, req),
            (&Method::GET, "/session") => session(&ctx, &req),
            (&Method::GET, "/snapshot") => self.snapshot(&ctx, &req).await,
            (&Method::GET, "/live") => self.live(&ctx, req),
            (&Method::POST, "/event") => test_event(&ctx, req).await,
            _ => error(StatusCode::NOT_FOUND, "no such dashboard page"),
        }
    }

    async fn login(&self, ctx: &Context<'_>, req: Request<Incoming>) -> Response<Body> {
        if self.failures.blocked(ctx.peer) {
            return error(
                StatusCode::TOO_MANY_REQUESTS,
                "too many failed logins from your address; wait a minute",
            );
        }
        if !auth::same_origin(req.headers()) {
            return error(StatusCode::FORBIDDEN, "cross-site login refused");
        }
        let secure_cookie = secure(ctx, Some(req.headers()));
        let json_body = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json"));
        let body = match read_body(req, 4096).await {
            Ok(body) => body,
            Err(response) => return *response,
        };
        let fields = if json_body {
            match serde_json::from_slice::<serde_json::Map<String, Value>>(&body) {
                Ok(map) => map
                    .into_iter()
                    .filter_map(|(k, v)| v.as_str().map(|v| (k, v.to_string())))
                    .collect(),
                Err(_) => return error(StatusCode::BAD_REQUEST, "login body is not a JSON object"),
            }
        } else {
            form_fields(&body)
        };
        let field = |name: &str| {
            fields
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.trim())
                .filter(|v| !v.is_empty())
        };
        let Some(scope) = auth::login(
            ctx.node,
            ctx.config,
            field("token"),
            field("key"),
            field("secret"),
        ) else {
            self.failures.failed(ctx.peer);
            tracing::warn!(peer = %ctx.peer, "dashboard login refused");
            return error(
                StatusCode::UNAUTHORIZED,
                "wrong app key and secret, or wrong dashboard token",
            );
        };
        let Some(cookie) = auth::issue(ctx.node, ctx.config, &scope) else {
            return error(StatusCode::UNAUTHORIZED, "no such app");
        };
        tracing::info!(peer = %ctx.peer, scope = ?scope, "dashboard login");
        let mut response = session_answer(ctx, &scope, Some(&cookie));
        if let Ok(v) = HeaderValue::from_str(&auth::set_cookie(&cookie, secure_cookie)) {
            response.headers_mut().insert(header::SET_COOKIE, v);
        }
        response
    }

    async fn snapshot(&self, ctx: &Context<'_>, req: &Request<Incoming>) -> Response<Body> {
        let (_, hub) = match authorised_app(ctx, req) {
            Ok(found) => found,
            Err(response) => return *response,
        };
        let value = snapshot::snapshot(
            ctx.node,
            &hub,
            &self.history,
            self.started,
            snapshot::HISTORY_SECONDS,
            CLUSTER_WAIT,
        )
        .await;
        json_response(StatusCode::OK, &value)
    }

    fn live(self: &Arc<Self>, ctx: &Context<'_>, mut req: Request<Incoming>) -> Response<Body> {
        if !crate::ws::is_upgrade(&req) {
            return error(
                StatusCode::UPGRADE_REQUIRED,
                "the live dashboard is a WebSocket",
            );
        }
        if !auth::same_origin(req.headers()) {
            return error(StatusCode::FORBIDDEN, "cross-site dashboard socket refused");
        }
        let (session, hub) = match authorised_app(ctx, &req) {
            Ok(found) => found,
            Err(response) => return *response,
        };
        let Some(viewer) = live::Viewer::enter(&self.viewers) else {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "too many live dashboards open on this node",
            );
        };
        let handshake = match crate::ws::handshake(&mut req, None) {
            Ok(h) => h,
            Err(response) => return *response,
        };
        let live = live::Live {
            dashboard: self.clone(),
            node: ctx.node.clone(),
            config: ctx.config.clone(),
            hub,
            session,
            shutdown: ctx.shutdown.clone(),
            _viewer: viewer,
        };
        ctx.sessions.spawn(live.run(handshake.upgrade));
        handshake.response
    }
}

fn page(text: &'static str, content_type: &'static str) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
             img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn json_response(status: StatusCode, value: &Value) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(value.to_string())));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn error(status: StatusCode, message: &str) -> Response<Body> {
    json_response(status, &json!({ "error": message }))
}

/// Whether cookies should be `Secure`: the server terminates TLS, or a
/// proxy in front says it did.
fn secure(ctx: &Context<'_>, headers: Option<&hyper::HeaderMap>) -> bool {
    ctx.tls
        || headers
            .and_then(|h| h.get("x-forwarded-proto"))
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"https"))
}

async fn read_body(req: Request<Incoming>, limit: usize) -> Result<Bytes, Box<Response<Body>>> {
    match Limited::new(req.into_body(), limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(_) => Err(Box::new(error(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!("request body missing or over {limit} bytes"),
        ))),
    }
}

fn form_fields(body: &[u8]) -> Vec<(String, String)> {
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(&s.replace('+', " "))
            .decode_utf8_lossy()
            .into_owned()
    };
    String::from_utf8_lossy(body)
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (decode(k), decode(v)))
        .collect()
}

fn query_param(req: &Request<Incoming>, name: &str) -> Option<String> {
    req.uri().query().and_then(|q| {
        q.split('&')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| {
                percent_encoding::percent_decode_str(v)
                    .decode_utf8_lossy()
                    .into_owned()
            })
    })
}

/// The session and the app named by `?app=` (the session's own app when
/// it is scoped to one), or the refusal.
#[allow(clippy::result_large_err)]
fn authorised_app(
    ctx: &Context<'_>,
    req: &Request<Incoming>,
) -> Result<(Session, Arc<Hub>), Box<Response<Body>>> {
    let Some(session) = auth::authenticate(ctx.node, ctx.config, req.headers()) else {
        return Err(Box::new(error(
            StatusCode::UNAUTHORIZED,
            "log in to the dashboard first (POST /dashboard/login)",
        )));
    };
    let app_id = match (query_param(req, "app"), &session.scope) {
        (Some(id), _) => id,
        (None, Scope::App(id)) => id.clone(),
        (None, Scope::All) => match ctx.node.hubs().first() {
            Some(hub) => hub.app.id.clone(),
            None => return Err(Box::new(error(StatusCode::NOT_FOUND, "no apps"))),
        },
    };
    if !session.scope.allows(&app_id) {
        return Err(Box::new(error(
            StatusCode::FORBIDDEN,
            "this login is for another app",
        )));
    }
    match ctx.node.by_id(&app_id) {
        Some(hub) => Ok((session, hub.clone())),
        None => Err(Box::new(error(StatusCode::NOT_FOUND, "no such app"))),
    }
}

/// The apps a session may open, with the CSRF token for its cookie.
fn session_answer(ctx: &Context<'_>, scope: &Scope, cookie: Option<&str>) -> Response<Body> {
    let apps: Vec<Value> = ctx
        .node
        .hubs()
        .iter()
        .filter(|h| scope.allows(&h.app.id))
        .map(|h| json!({ "id": h.app.id, "key": h.app.key }))
        .collect();
    let csrf = cookie.and_then(|c| auth::csrf_token(ctx.node, ctx.config, c));
    json_response(
        StatusCode::OK,
        &json!({
            "scope": match scope { Scope::All => "all", Scope::App(_) => "app" },
            "apps": apps,
            "csrf": csrf,
        }),
    )
}

fn session(ctx: &Context<'_>, req: &Request<Incoming>) -> Response<Body> {
    match auth::authenticate(ctx.node, ctx.config, req.headers()) {
        Some(session) => session_answer(ctx, &session.scope, session.cookie.as_deref()),
        None => error(StatusCode::UNAUTHORIZED, "not logged in"),
    }
}

fn logout(ctx: &Context<'_>, req: Request<Incoming>) -> Response<Body> {
    if let Some(session) = auth::authenticate(ctx.node, ctx.config, req.headers())
        && !auth::csrf_ok(ctx.node, ctx.config, &session, req.headers())
    {
        return error(StatusCode::FORBIDDEN, "missing or wrong CSRF token");
    }
    let mut response = json_response(StatusCode::OK, &json!({ "ok": true }));
    if let Ok(v) = HeaderValue::from_str(&auth::set_cookie("", secure(ctx, Some(req.headers())))) {
        response.headers_mut().insert(header::SET_COOKIE, v);
    }
    response
}

/// `POST /dashboard/event?app=ID` with `{"channel","event","data"}`: sends
/// a test event as the HTTP API would (same checks and limits).
async fn test_event(ctx: &Context<'_>, req: Request<Incoming>) -> Response<Body> {
    let (session, hub) = match authorised_app(ctx, &req) {
        Ok(found) => found,
        Err(response) => return *response,
    };
    if !auth::csrf_ok(ctx.node, ctx.config, &session, req.headers()) {
        return error(StatusCode::FORBIDDEN, "missing or wrong CSRF token");
    }
    let limit = hub
        .app
        .max_event_bytes
        .saturating_mul(2)
        .saturating_add(4096);
    let body = match read_body(req, limit).await {
        Ok(body) => body,
        Err(response) => return *response,
    };
    #[derive(serde::Deserialize)]
    struct TestEvent {
        channel: String,
        event: String,
        data: Value,
    }
    let event: TestEvent = match serde_json::from_slice(&body) {
        Ok(e) => e,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                &format!("expected {{\"channel\",\"event\",\"data\"}}: {e}"),
            );
        }
    };
    if event.event.starts_with("pusher:") || event.event.starts_with("pusher_internal:") {
        return error(
            StatusCode::BAD_REQUEST,
            "event names starting with pusher: are reserved for the protocol",
        );
    }
    // Pusher's debug console sends the data as the text typed in.
    let data = match event.data {
        Value::String(s) => s,
        other => other.to_string(),
    };
    let api_body = json!({ "name": event.event, "channel": event.channel, "data": data });
    let api_body = Bytes::from(api_body.to_string());
    match crate::http_api::trigger(ctx.node, &hub, &api_body).await {
        Ok(_) => json_response(StatusCode::OK, &json!({ "ok": true })),
        Err(e) => error(
            StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST),
            &e.message,
        ),
    }
}
