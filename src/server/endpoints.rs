//! The HTTP endpoints that are not WebSocket front-ends: operations
//! (`/ready`, `/metrics`), the Socket.IO request adapter with its CORS, and
//! the HTTP API entry with its body limit and CORS.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue, ORIGIN};
use hyper::{Method, Request, Response, StatusCode};

use super::{Body, State};
use crate::http_api::{self, ApiRequest};
use crate::metrics;

pub(super) fn respond(
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

pub(super) fn json(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    respond(status, "application/json", value.to_string())
}

pub(super) fn json_error(status: StatusCode, message: &str) -> Response<Body> {
    json(status, &serde_json::json!({ "error": message }))
}

/// `/metrics` on the public port (see [`metrics::endpoint`]).
pub(super) fn metrics_endpoint(
    state: &State,
    req: &Request<Incoming>,
    dedicated: bool,
) -> Response<Body> {
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
pub(super) fn readiness(node: &crate::core::node::Node, ready: bool) -> Response<Body> {
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
    let dependencies = node.dependencies();
    let dependencies_ok = dependencies.iter().all(|(_, ok)| *ok);
    let dependencies: serde_json::Map<String, serde_json::Value> = dependencies
        .into_iter()
        .map(|(name, ok)| {
            (
                name.to_string(),
                if ok { "connected" } else { "unavailable" }.into(),
            )
        })
        .collect();
    let (status, text) = if ready {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting_down")
    };
    json(
        status,
        &serde_json::json!({
            "status": text,
            "degraded": !(adapter_healthy && ingestion_ok && dependencies_ok),
            "adapter": adapter.name(),
            "adapter_healthy": adapter_healthy,
            "redis_ingestion": ingestion,
            "dependencies": dependencies,
        }),
    )
}

/// The Engine.IO revision of a request that opens a WebSocket directly
/// (`transport=websocket`, no `sid`: not an upgrade of a polling session),
/// the lean transport's clients.
fn direct_websocket(req: &Request<Incoming>) -> Option<crate::socketio::lean::Eio> {
    if req.method() != Method::GET || !crate::ws::is_upgrade(req) {
        return None;
    }
    let (mut eio, mut websocket) = (None, false);
    for pair in req.uri().query().unwrap_or("").split('&') {
        match pair.split_once('=').unwrap_or((pair, "")) {
            ("EIO", v) => eio = crate::socketio::lean::Eio::from_query(v),
            ("transport", v) => websocket = v == "websocket",
            ("sid", _) => return None,
            _ => {}
        }
    }
    eio.filter(|_| websocket)
}

/// Opens a lean Engine.IO WebSocket connection (see [`crate::socketio::lean`]).
fn socketio_websocket(
    state: &State,
    frontend: &Arc<crate::socketio::SocketIoFrontend>,
    mut req: Request<Incoming>,
    eio: crate::socketio::lean::Eio,
) -> Response<Body> {
    let hub = frontend.hub();
    if !state.ready.load(Ordering::SeqCst) {
        return json_error(StatusCode::SERVICE_UNAVAILABLE, "server is shutting down");
    }
    let Some(slot) = hub.try_connect() else {
        hub.stats.error("over_connection_quota");
        return json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "application is over its connection quota",
        );
    };
    let handshake = match crate::ws::handshake(&mut req, None) {
        Ok(h) => h,
        Err(response) => return *response,
    };
    let cookie: Option<Arc<str>> = req
        .headers()
        .get(hyper::header::COOKIE)
        .and_then(|c| c.to_str().ok())
        .map(Into::into);
    let (frontend, max_message) = (frontend.clone(), state.config.max_message_bytes);
    state.sessions.spawn(async move {
        let upgraded = match handshake.upgrade.await {
            Ok(u) => u,
            Err(e) => {
                tracing::debug!(error = %e, "upgrade failed");
                return;
            }
        };
        match crate::ws::LeanSocket::from_upgraded(upgraded, max_message) {
            Ok(socket) => crate::socketio::lean::run(socket, frontend, eio, cookie, slot).await,
            // The listener only accepts TCP (or TLS over TCP) streams.
            Err(_) => tracing::warn!("upgraded connection is neither TCP nor TLS over TCP"),
        }
    });
    handshake.response
}

/// Hands a `/socket.io/` request to its transport — a WebSocket opened
/// directly to the lean transport, the rest (polling, upgrades) to
/// engineioxide — answering CORS the way engine.io 3 did for
/// laravel-echo-server (the page and the socket are on different origins,
/// and polling sends cookies).
pub(super) async fn socketio(state: &State, req: Request<Incoming>) -> Response<Body> {
    let Some((frontend, service)) = &state.socketio else {
        return json_error(
            StatusCode::NOT_FOUND,
            "Socket.IO is not enabled for any app",
        );
    };
    let hub = frontend.hub();
    // The app that owns the path may since have been disabled or deleted.
    if !hub.app.enabled
        || !state
            .node
            .by_id(&hub.app.id)
            .is_some_and(|h| Arc::ptr_eq(&h, hub))
    {
        return json_error(StatusCode::FORBIDDEN, "this app is disabled or deleted");
    }
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
    if let Some(eio) = direct_websocket(&req) {
        return socketio_websocket(state, frontend, req, eio);
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
pub(super) async fn api(state: &State, req: Request<Incoming>) -> Response<Body> {
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
    let answer = match state.custom.socket_api(&request).await {
        Some(answer) => answer,
        None => http_api::handle(&state.node, &request).await,
    };
    match answer {
        Ok(value) => json(StatusCode::OK, &value),
        Err(e) => json_error(
            StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST),
            &e.message,
        ),
    }
}
