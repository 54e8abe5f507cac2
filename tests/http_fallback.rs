//! pusher-js's HTTP fallback transports, spoken by hand: the wire of a
//! polling session (open, arrays, sends, close), refusals of bad input with
//! clear statuses, CORS, the slow-consumer bound and session expiry. Real
//! server on a free port. (pusher-js itself is in tests/js, tests/cluster and
//! tests/browser.)

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::*;
use resonance::server::Server;

const BASE: &str = "/pusher/app/resonance-key";

fn post(path: &str, headers: &str, body: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

async fn poll(addr: SocketAddr, session: &str) -> (u16, String) {
    http(
        addr,
        &post(&format!("{BASE}/{session}/xhr?protocol=7&t=1&n=1"), "", ""),
    )
    .await
}

async fn send(addr: SocketAddr, session: &str, messages: &[&str]) -> (u16, String) {
    let body = serde_json::to_string(messages).unwrap();
    http(
        addr,
        &post(&format!("{BASE}/{session}/xhr_send?t=1&n=2"), "", &body),
    )
    .await
}

/// The Pusher messages in a receive response's `a[...]` lines.
fn messages(response: &str) -> Vec<serde_json::Value> {
    response
        .lines()
        .filter_map(|l| l.strip_prefix('a'))
        .filter_map(|a| serde_json::from_str::<Vec<String>>(a).ok())
        .flatten()
        .map(|m| serde_json::from_str(&m).expect("a JSON message"))
        .collect()
}

fn subscribe(channel: &str) -> String {
    serde_json::json!({ "event": "pusher:subscribe", "data": { "channel": channel } }).to_string()
}

#[tokio::test]
async fn polling_session_open_subscribe_events_and_client_messages() {
    let server = start(Server::builder(config())).await;
    let (status, first) = poll(server.addr, "1/aaaaaaaa").await;
    assert_eq!(status, 200, "{first}");
    assert!(
        first.contains("\r\no\n") || first.contains("\no\n"),
        "{first}"
    );
    let hello = messages(&first);
    assert_eq!(
        hello[0]["event"], "pusher:connection_established",
        "{first}"
    );
    let (status, _) = send(server.addr, "1/aaaaaaaa", &[&subscribe("news")]).await;
    assert_eq!(status, 204);
    let (_, answer) = poll(server.addr, "1/aaaaaaaa").await;
    assert_eq!(
        messages(&answer)[0]["event"],
        "pusher_internal:subscription_succeeded",
        "{answer}"
    );
    let (status, _) = trigger(server.addr, "news", "headline", "{\"n\":1}").await;
    assert_eq!(status, 200);
    let (_, answer) = poll(server.addr, "1/aaaaaaaa").await;
    let got = messages(&answer);
    assert_eq!(got[0]["event"], "headline", "{answer}");
    assert_eq!(got[0]["data"], "{\"n\":1}");
    // a bad message gets the same pusher:error as on a WebSocket
    send(server.addr, "1/aaaaaaaa", &["not json"]).await;
    let (_, answer) = poll(server.addr, "1/aaaaaaaa").await;
    assert_eq!(messages(&answer)[0]["event"], "pusher:error", "{answer}");
    // pusher:ping is answered; [] is a heartbeat
    assert_eq!(send(server.addr, "1/aaaaaaaa", &[]).await.0, 204);
    send(
        server.addr,
        "1/aaaaaaaa",
        &[r#"{"event":"pusher:ping","data":{}}"#],
    )
    .await;
    let (_, answer) = poll(server.addr, "1/aaaaaaaa").await;
    assert_eq!(messages(&answer)[0]["event"], "pusher:pong", "{answer}");
    server.shutdown().await;
}

#[tokio::test]
async fn bad_requests_get_clear_statuses() {
    let mut c = config();
    c.apps[0].allowed_origins = vec!["https://good.example".into()];
    let server = start(Server::builder(c)).await;
    let a = server.addr;
    let cases: Vec<(String, u16, &str)> = vec![
        (
            format!("GET {BASE}/1/abc/xhr HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
            405,
            "POST",
        ),
        (
            post("/pusher/app/nope/1/abc/xhr", "", ""),
            404,
            "application does not exist",
        ),
        (
            post(&format!("{BASE}/1/abc/other"), "", ""),
            404,
            "not a session URL",
        ),
        (
            post(&format!("{BASE}/1/a.b/xhr"), "", ""),
            404,
            "not a session URL",
        ),
        (
            post(&format!("{BASE}/1/abc/xhr_send"), "", "[\"{}\"]"),
            404,
            "no such session",
        ),
        (
            post(&format!("{BASE}/1/abc/xhr_send"), "", "{\"event\":1}"),
            400,
            "JSON array of strings",
        ),
        (
            post(&format!("{BASE}/1/abc/xhr_send"), "", &"x".repeat(200_000)),
            413,
            "body over",
        ),
        (
            post(
                &format!("{BASE}/1/abc/xhr"),
                "Origin: https://evil.example\r\n",
                "",
            ),
            403,
            "not allowed",
        ),
    ];
    for (request, status, words) in cases {
        let (got, text) = http(a, &request).await;
        assert_eq!(got, status, "{request:.80}\n{text}");
        assert!(text.contains(words), "{words:?} in {text}");
    }
    // CORS: a preflight from an allowed origin, and the answer to the request itself
    let preflight = format!(
        "OPTIONS {BASE}/1/abc/xhr_streaming HTTP/1.1\r\nHost: x\r\nOrigin: https://good.example\r\nAccess-Control-Request-Method: POST\r\nAccess-Control-Request-Headers: content-type\r\nConnection: close\r\n\r\n"
    );
    let (status, text) = http(a, &preflight).await;
    assert_eq!(status, 204, "{text}");
    let lower = text.to_ascii_lowercase();
    assert!(
        lower.contains("access-control-allow-origin: https://good.example"),
        "{text}"
    );
    assert!(
        lower.contains("access-control-allow-methods: post"),
        "{text}"
    );
    assert!(
        lower.contains("access-control-allow-headers: content-type"),
        "{text}"
    );
    let (status, text) = http(
        a,
        &post(
            &format!("{BASE}/1/abc/xhr"),
            "Origin: https://good.example\r\n",
            "",
        ),
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        text.to_ascii_lowercase()
            .contains("access-control-allow-origin: https://good.example")
    );
    server.shutdown().await;
}

#[tokio::test]
async fn frames_beyond_the_outbox_limit_close_the_session_as_a_slow_consumer() {
    let mut c = config();
    c.server.outbox_limit = 4;
    let server = start(Server::builder(c)).await;
    poll(server.addr, "2/slowslow").await;
    send(server.addr, "2/slowslow", &[&subscribe("busy")]).await;
    poll(server.addr, "2/slowslow").await; // subscription_succeeded
    for n in 0..12 {
        trigger(server.addr, "busy", "e", &format!("{{\"n\":{n}}}")).await;
    }
    let (_, answer) = poll(server.addr, "2/slowslow").await;
    assert!(answer.contains("c[4100,"), "{answer}");
    assert!(
        messages(&answer).is_empty(),
        "nothing but the close: {answer}"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn a_session_without_receive_requests_expires_within_the_activity_timeout() {
    let mut c = config();
    c.apps[0].activity_timeout = 1;
    let server = start(Server::builder(c)).await;
    poll(server.addr, "3/vanishes").await;
    send(server.addr, "3/vanishes", &[&subscribe("watched")]).await;
    poll(server.addr, "3/vanishes").await;
    let occupied = |text: &str| text.contains("\"occupied\":true");
    let (_, info) = get_channel(server.addr, "watched").await;
    assert!(occupied(&info), "{info}");
    let start = Instant::now();
    loop {
        let (_, info) = get_channel(server.addr, "watched").await;
        if !occupied(&info) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "session still there: {info}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // the client coming back finds its session gone: sends are refused
    assert_eq!(send(server.addr, "3/vanishes", &[]).await.0, 404);
    server.shutdown().await;
}

async fn get_channel(addr: SocketAddr, channel: &str) -> (u16, String) {
    let path = format!("/apps/100000/channels/{channel}");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let query = format!("auth_key=resonance-key&auth_timestamp={now}&auth_version=1.0");
    let signature = resonance::signing::hmac_sha256_hex(
        "resonance-secret",
        format!("GET\n{path}\n{query}").as_bytes(),
    );
    get(addr, &format!("{path}?{query}&auth_signature={signature}")).await
}
