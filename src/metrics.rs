//! `/metrics` in the Prometheus text format, rendered on request from the
//! per-app atomics (nothing is recorded per message beyond those adds).

use std::convert::Infallible;
use std::fmt::Write;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

use crate::config::ServerConfig;
use crate::core::node::Node;

/// Renders every metric of every app on this node.
pub fn render(node: &Node, ready: bool) -> String {
    let mut out = String::with_capacity(4096);
    type Pick = fn(&crate::core::stats::AppStats) -> u64;
    let series: [(&str, &str, &str, Pick); 13] = [
        (
            "resonance_connections",
            "gauge",
            "Open WebSocket connections.",
            |s| s.connections.load(Relaxed),
        ),
        (
            "resonance_connections_total",
            "counter",
            "WebSocket connections accepted.",
            |s| s.connections_total.load(Relaxed),
        ),
        (
            "resonance_subscriptions",
            "gauge",
            "Channel subscriptions held by connections.",
            |s| s.subscriptions.load(Relaxed),
        ),
        (
            "resonance_messages_received_total",
            "counter",
            "Messages received from clients.",
            |s| s.messages_in.load(Relaxed),
        ),
        (
            "resonance_bytes_received_total",
            "counter",
            "Bytes of messages received from clients.",
            |s| s.bytes_in.load(Relaxed),
        ),
        (
            "resonance_messages_sent_total",
            "counter",
            "Event frames queued to clients (deliveries).",
            |s| s.messages_out.load(Relaxed),
        ),
        (
            "resonance_bytes_sent_total",
            "counter",
            "Bytes of event frames queued to clients.",
            |s| s.bytes_out.load(Relaxed),
        ),
        (
            "resonance_http_api_requests_total",
            "counter",
            "HTTP API requests.",
            |s| s.api_calls.load(Relaxed),
        ),
        (
            "resonance_webhook_events_sent_total",
            "counter",
            "Webhook events delivered (2xx) by this node.",
            |s| s.webhooks.sent.load(Relaxed),
        ),
        (
            "resonance_webhook_requests_failed_total",
            "counter",
            "Webhook requests that failed (non-2xx, timeout, refused).",
            |s| s.webhooks.failed.load(Relaxed),
        ),
        (
            "resonance_webhook_requests_retried_total",
            "counter",
            "Webhook requests sent again after a failure.",
            |s| s.webhooks.retried.load(Relaxed),
        ),
        (
            "resonance_webhook_events_dropped_total",
            "counter",
            "Webhook events dropped (queue full, or retried past 5 minutes).",
            |s| s.webhooks.dropped.load(Relaxed),
        ),
        (
            "resonance_webhook_queue_depth",
            "gauge",
            "Webhook events waiting to be sent.",
            |s| s.webhooks.queued.load(Relaxed),
        ),
    ];
    for (name, kind, help, pick) in series {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for hub in node.hubs() {
            let _ = writeln!(
                out,
                "{name}{{app_id=\"{}\"}} {}",
                hub.app.id,
                pick(&hub.stats)
            );
        }
    }
    let _ = writeln!(
        out,
        "# HELP resonance_errors_total Errors and refusals by kind.\n# TYPE resonance_errors_total counter"
    );
    for hub in node.hubs() {
        for (kind, n) in hub.stats.errors() {
            let _ = writeln!(
                out,
                "resonance_errors_total{{app_id=\"{}\",kind=\"{kind}\"}} {n}",
                hub.app.id
            );
        }
    }
    let _ = writeln!(
        out,
        "# HELP resonance_redis_connected Whether the Laravel Redis ingestion is connected (apps that use it).\n# TYPE resonance_redis_connected gauge"
    );
    for hub in node.hubs().iter().filter(|h| h.app.redis_url.is_some()) {
        let connected = hub.stats.ingress.load(Relaxed) == 1;
        let _ = writeln!(
            out,
            "resonance_redis_connected{{app_id=\"{}\"}} {}",
            hub.app.id,
            u8::from(connected)
        );
    }
    let _ = writeln!(
        out,
        "# HELP resonance_ready Whether the node accepts connections (0 only while shutting down; a Redis outage shows in resonance_redis_connected and resonance_adapter_healthy instead).\n# TYPE resonance_ready gauge\nresonance_ready {}",
        u8::from(ready)
    );
    let _ = writeln!(
        out,
        "# HELP resonance_adapter_healthy Whether the adapter reaches the other nodes.\n# TYPE resonance_adapter_healthy gauge\nresonance_adapter_healthy{{adapter=\"{}\"}} {}",
        node.adapter().name(),
        u8::from(node.adapter().healthy())
    );
    if let Some(rss) = resident_bytes() {
        let _ = writeln!(
            out,
            "# HELP resonance_process_resident_memory_bytes Resident memory of the process.\n# TYPE resonance_process_resident_memory_bytes gauge\nresonance_process_resident_memory_bytes {rss}"
        );
    }
    out
}

/// Resident set size from `/proc/self/statm` (Linux only).
pub fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

/// Whether a `/metrics` request carries `token` (`Authorization: Bearer`
/// or `?token=`), compared in constant time.
pub fn token_matches(headers: &hyper::HeaderMap, query: Option<&str>, token: &str) -> bool {
    let bearer = headers
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let from_query = query.and_then(|q| {
        q.split('&')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == "token")
            .map(|(_, v)| percent_encoding::percent_decode_str(v).decode_utf8_lossy())
    });
    bearer.is_some_and(|b| crate::signing::same(b, token))
        || from_query.is_some_and(|q| crate::signing::same(&q, token))
}

fn answer(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

fn refuse(status: StatusCode, message: &str) -> Response<Full<Bytes>> {
    let body = serde_json::json!({ "error": message }).to_string();
    answer(status, "application/json", body)
}

/// `GET /metrics`. It names every app id and its traffic, so it is not for
/// everyone: with `metrics_listen` it is served only on that listener
/// (`dedicated`; the public port answers 404), and with `metrics_token` it
/// needs `Authorization: Bearer <token>` or `?token=<token>`. Without
/// either it is open, as Prometheus scrapers expect (README: security).
pub(crate) fn endpoint(
    node: &Node,
    ready: bool,
    config: &ServerConfig,
    req: &Request<Incoming>,
    dedicated: bool,
) -> Response<Full<Bytes>> {
    if config.metrics_listen.is_some() && !dedicated {
        return refuse(
            StatusCode::NOT_FOUND,
            "metrics are served on the metrics listener (metrics_listen), not on this port",
        );
    }
    if let Some(token) = &config.metrics_token
        && !token_matches(req.headers(), req.uri().query(), token)
    {
        return refuse(
            StatusCode::UNAUTHORIZED,
            "metrics need Authorization: Bearer <metrics_token> (or ?token=)",
        );
    }
    answer(
        StatusCode::OK,
        "text/plain; version=0.0.4",
        render(node, ready),
    )
}

/// The separate metrics listener: `GET /metrics` and nothing else, plain
/// HTTP with the same header timeout as the public port. Runs until
/// aborted.
pub(crate) async fn serve(
    listener: TcpListener,
    node: Arc<Node>,
    config: Arc<ServerConfig>,
    ready: impl Fn() -> bool + Clone + Send + Sync + 'static,
) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            // Out of file descriptors and the like: back off, keep serving.
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let (node, config, ready) = (node.clone(), config.clone(), ready.clone());
        tokio::spawn(async move {
            let service = service_fn(move |req: Request<Incoming>| {
                let response = match (req.method(), req.uri().path()) {
                    (&Method::GET, "/metrics") => endpoint(&node, ready(), &config, &req, true),
                    _ => refuse(StatusCode::NOT_FOUND, "only GET /metrics is served here"),
                };
                std::future::ready(Ok::<_, Infallible>(response))
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(30))
                .serve_connection(TokioIo::new(stream), service);
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "metrics connection ended with an error");
            }
        });
    }
}
