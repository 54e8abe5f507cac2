//! `/ready` means "this node can serve its clients": a shared Redis that is
//! unreachable is reported in the body and in `/metrics`, not as a 503
//! that would take every node out of the load balancer at once.

mod common;

use common::*;
use resonance::server::Server;

fn body(text: &str) -> serde_json::Value {
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

#[tokio::test]
async fn redis_down_is_reported_not_a_503() {
    // A port nobody listens on: the ingestion can never connect.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let mut config = config();
    config.apps[0].redis_url = Some(format!("redis://127.0.0.1:{port}/"));
    let server = start(Server::builder(config)).await;
    // Served at once, degraded.
    let (status, text) = get(server.addr, "/ready").await;
    assert_eq!(status, 200, "{text}");
    let v = body(&text);
    assert_eq!(v["status"], "ready", "{text}");
    assert_eq!(v["degraded"], true, "{text}");
    assert_eq!(v["adapter"], "local", "{text}");
    assert_eq!(v["adapter_healthy"], true, "{text}");
    assert_eq!(v["redis_ingestion"]["100000"], "unavailable", "{text}");
    let (_, metrics) = get(server.addr, "/metrics").await;
    assert!(
        metrics.contains("resonance_redis_connected{app_id=\"100000\"} 0"),
        "{metrics}"
    );
    assert!(metrics.contains("resonance_ready 1"), "{metrics}");
    // Clients are still served.
    let mut c = connect(server.addr, "/app/resonance-key").await;
    assert!(next_text(&mut c).await.contains("connection_established"));
    server.shutdown().await;
}

#[tokio::test]
async fn without_dependencies_ready_is_not_degraded() {
    let server = start(Server::builder(config())).await;
    let (status, text) = get(server.addr, "/ready").await;
    assert_eq!(status, 200, "{text}");
    let v = body(&text);
    assert_eq!(v["degraded"], false, "{text}");
    assert_eq!(v["redis_ingestion"], serde_json::json!({}), "{text}");
    server.shutdown().await;
}
