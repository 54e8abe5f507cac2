//! `/metrics` in the Prometheus text format, rendered on request from the
//! per-app atomics (nothing is recorded per message beyond those adds).

use std::fmt::Write;
use std::sync::atomic::Ordering::Relaxed;

use crate::core::node::Node;

/// Renders every metric of every app on this node.
pub fn render(node: &Node, ready: bool) -> String {
    let mut out = String::with_capacity(4096);
    type Pick = fn(&crate::core::stats::AppStats) -> u64;
    let series: [(&str, &str, &str, Pick); 8] = [
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
