//! Every front-end over the built-in TLS (`wss://`), against a real server
//! with a self-signed certificate made by the `openssl` CLI at test time:
//! the Pusher protocol (events from the HTTP API, messages over 16 KiB both
//! ways, fragments, ping/pong, clean close), Socket.IO (engine.io v4 over a
//! websocket) and a custom route.

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use common::*;
use futures_util::{SinkExt, StreamExt};
use resonance::custom::Route;
use resonance::server::Server;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio_rustls::rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use tokio_websockets::{Message, WebSocketStream};

type WssClient = WebSocketStream<TlsStream<TcpStream>>;

/// A fresh self-signed certificate and key (PEM) in a temporary directory.
fn make_cert() -> (PathBuf, String, String) {
    let dir = std::env::temp_dir().join(format!(
        "resonance-tls-test-{}-{}",
        std::process::id(),
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let status = std::process::Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args([
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(std::process::Stdio::null())
        .status()
        .expect("the openssl CLI is needed for the TLS tests");
    assert!(status.success(), "openssl req failed");
    let s = |p: PathBuf| p.to_string_lossy().into_owned();
    (dir, s(cert), s(key))
}

/// Accepts any certificate: the test checks the transport, not the PKI.
#[derive(Debug)]
struct AnyCert;

impl ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, tokio_rustls::rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, tokio_rustls::rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }
    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, tokio_rustls::rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        tokio_rustls::rustls::crypto::ring::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

async fn tls_connect(addr: SocketAddr) -> TlsStream<TcpStream> {
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCert))
        .with_no_client_auth();
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let name = ServerName::try_from("127.0.0.1").expect("server name");
    TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .expect("TLS handshake")
}

async fn wss(addr: SocketAddr, path: &str, frame_size: usize) -> WssClient {
    let stream = tls_connect(addr).await;
    let (client, _) = tokio_websockets::ClientBuilder::new()
        .uri(&format!("wss://{addr}{path}"))
        .expect("uri")
        .config(tokio_websockets::Config::default().frame_size(frame_size))
        .limits(tokio_websockets::Limits::unlimited())
        .connect_on(stream)
        .await
        .expect("websocket upgrade over TLS");
    client
}

async fn recv(client: &mut WssClient) -> Option<Message> {
    match tokio::time::timeout(TIMEOUT, client.next()).await {
        Ok(Some(Ok(m))) => Some(m),
        Ok(_) => None,
        Err(_) => panic!("no message within {TIMEOUT:?}"),
    }
}

async fn recv_text(client: &mut WssClient) -> String {
    let m = recv(client)
        .await
        .expect("a message (the connection ended)");
    m.as_text().expect("a text message").to_string()
}

async fn send(client: &mut WssClient, text: &str) {
    client
        .send(Message::text(text.to_string()))
        .await
        .expect("send");
}

/// One HTTPS request; the status and the body.
async fn https(addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut stream = tls_connect(addr).await;
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut out = Vec::new();
    let _ = tokio::time::timeout(TIMEOUT, stream.read_to_end(&mut out)).await;
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    (status, body)
}

/// A signed Pusher HTTP API call (the default app's credentials).
async fn api(addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, String) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut query = format!("auth_key=resonance-key&auth_timestamp={now}&auth_version=1.0");
    if !body.is_empty() {
        query += &format!("&body_md5={}", resonance::signing::md5_hex(body.as_bytes()));
    }
    let signature = resonance::signing::hmac_sha256_hex(
        "resonance-secret",
        format!("{method}\n{path}\n{query}").as_bytes(),
    );
    https(
        addr,
        method,
        &format!("{path}?{query}&auth_signature={signature}"),
        body,
    )
    .await
}

async fn trigger_tls(addr: SocketAddr, channel: &str, event: &str, data: &str) {
    let body =
        serde_json::json!({ "name": event, "channels": [channel], "data": data }).to_string();
    let (status, text) = api(addr, "POST", "/apps/100000/events", &body).await;
    assert_eq!(status, 200, "trigger over https: {text}");
}

async fn start_tls() -> (Running, PathBuf) {
    let (dir, cert, key) = make_cert();
    let mut c = config();
    c.server.tls_cert = Some(cert);
    c.server.tls_key = Some(key);
    c.server.max_message_bytes = 1 << 20;
    c.apps[0].max_event_bytes = 1 << 20;
    c.apps[0].max_events_per_batch = 100;
    let server = start(Server::builder(c).route("/echo", Route::echo())).await;
    (server, dir)
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).expect("JSON")
}

#[tokio::test]
async fn pusher_over_wss_events_large_fragmented_ping_and_close() {
    let (server, dir) = start_tls().await;
    // Small frames: the client fragments everything it sends.
    let mut client = wss(server.addr, "/app/resonance-key?protocol=7", 1000).await;
    let hello = json(&recv_text(&mut client).await);
    assert_eq!(hello["event"], "pusher:connection_established");

    // A subscribe of 3 KiB, sent in 1000-byte fragments.
    let channel = "tls-events";
    send(
        &mut client,
        &serde_json::json!({ "event": "pusher:subscribe", "data": { "channel": channel }, "pad": "c".repeat(3000) })
            .to_string(),
    )
    .await;
    let ok = json(&recv_text(&mut client).await);
    assert_eq!(ok["event"], "pusher_internal:subscription_succeeded");
    assert_eq!(ok["channel"], channel);

    // An event from the HTTP API (over https too), small then > 16 KiB (more
    // than one TLS record).
    trigger_tls(server.addr, channel, "small", "hi").await;
    let got = json(&recv_text(&mut client).await);
    assert_eq!(
        (got["event"].as_str(), got["data"].as_str()),
        (Some("small"), Some("hi"))
    );
    let big = "b".repeat(40_000);
    trigger_tls(server.addr, channel, "big", &big).await;
    let got = json(&recv_text(&mut client).await);
    assert_eq!(got["event"], "big");
    assert_eq!(got["data"].as_str().map(str::len), Some(40_000));

    // A client message > 16 KiB in one frame (several TLS records).
    let mut big_client = wss(server.addr, "/app/resonance-key?protocol=7", 1 << 20).await;
    recv_text(&mut big_client).await;
    send(
        &mut big_client,
        &serde_json::json!({ "event": "pusher:subscribe", "data": { "channel": "tls-big" }, "pad": "p".repeat(50_000) })
            .to_string(),
    )
    .await;
    let ok = json(&recv_text(&mut big_client).await);
    assert_eq!(ok["channel"], "tls-big", "a 50 KB message over TLS");

    // pusher:ping and a WebSocket ping.
    send(&mut client, r#"{"event":"pusher:ping","data":{}}"#).await;
    assert_eq!(json(&recv_text(&mut client).await)["event"], "pusher:pong");
    client
        .send(Message::ping(&b"are you there"[..]))
        .await
        .expect("ping");
    let pong = recv(&mut client).await.expect("pong");
    assert!(pong.is_pong(), "{pong:?}");
    assert_eq!(&*pong.into_payload(), b"are you there");

    // Clean close: the server answers with the same code.
    client.close().await.expect("close");
    assert!(recv(&mut client).await.is_none(), "closed");
    big_client.close().await.expect("close");
    server.shutdown().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn many_events_in_a_burst_arrive_in_order_over_wss() {
    let (server, dir) = start_tls().await;
    let mut client = wss(server.addr, "/app/resonance-key?protocol=7", 1 << 20).await;
    recv_text(&mut client).await;
    send(
        &mut client,
        r#"{"event":"pusher:subscribe","data":{"channel":"burst"}}"#,
    )
    .await;
    recv_text(&mut client).await;
    // Batches of 100 events: direct writes and queued writes interleave.
    let events: Vec<_> = (0..100)
        .map(|i| serde_json::json!({ "name": "n", "channel": "burst", "data": format!("{i}:{}", "x".repeat(i * 50)) }))
        .collect();
    let body = serde_json::json!({ "batch": events }).to_string();
    for _ in 0..3 {
        let (status, text) = api(server.addr, "POST", "/apps/100000/batch_events", &body).await;
        assert_eq!(status, 200, "{text}");
    }
    for round in 0..3 {
        for i in 0..100 {
            let got = json(&recv_text(&mut client).await);
            let data = got["data"].as_str().unwrap_or_default();
            assert!(
                data.starts_with(&format!("{i}:")),
                "round {round} event {i}: {data:.20}"
            );
            assert_eq!(data.len(), format!("{i}:").len() + i * 50);
        }
    }
    server.shutdown().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn socketio_over_wss_receives_api_events() {
    let (server, dir) = start_tls().await;
    let mut client = wss(
        server.addr,
        "/socket.io/?EIO=4&transport=websocket",
        1 << 20,
    )
    .await;
    let open = recv_text(&mut client).await;
    assert!(open.starts_with("0{"), "engine.io open: {open}");
    send(&mut client, "40").await;
    let connected = recv_text(&mut client).await;
    assert!(
        connected.starts_with("40"),
        "socket.io connect: {connected}"
    );
    send(
        &mut client,
        r#"42["subscribe",{"channel":"sio-tls","auth":{}}]"#,
    )
    .await;
    // No frame answers a subscribe: wait until the API counts it.
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        let (_, body) = api(server.addr, "GET", "/apps/100000/channels/sio-tls", "").await;
        if serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["occupied"].as_bool())
            == Some(true)
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "subscription not seen: {body}"
        );
        tokio::task::yield_now().await;
    }
    let big = "s".repeat(30_000);
    trigger_tls(server.addr, "sio-tls", "App\\Events\\Shipped", &big).await;
    let event = loop {
        let text = recv_text(&mut client).await;
        if text == "2" {
            send(&mut client, "3").await; // engine.io ping
            continue;
        }
        break text;
    };
    let payload = event
        .strip_prefix("42")
        .unwrap_or_else(|| panic!("an event packet: {event:.80}"));
    let packet: serde_json::Value = serde_json::from_str(payload).expect("JSON");
    assert_eq!(packet[0], "App\\Events\\Shipped");
    assert_eq!(packet[1], "sio-tls");
    assert_eq!(packet[2].as_str().map(str::len), Some(30_000));
    server.shutdown().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn custom_route_over_wss_echoes() {
    let (server, dir) = start_tls().await;
    let mut client = wss(server.addr, "/echo", 4096).await;
    send(&mut client, "héllo").await;
    assert_eq!(recv_text(&mut client).await, "héllo");
    let big = "e".repeat(70_000);
    send(&mut client, &big).await;
    assert_eq!(recv_text(&mut client).await, big);
    client.close().await.expect("close");
    server.shutdown().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn a_burst_larger_than_one_wake_is_read_completely_over_wss() {
    // 64 pings of 10 KB sent at once: more than one wake's worth of reads
    // (32 × 8 KiB), all answered. (It passes without the look-again at the
    // end of `read_available` too: the socket stays readable while rustls
    // holds plaintext, see there.)
    let (server, dir) = start_tls().await;
    let mut client = wss(server.addr, "/app/resonance-key?protocol=7", 1 << 20).await;
    recv_text(&mut client).await;
    let ping = serde_json::json!({ "event": "pusher:ping", "data": {}, "pad": "q".repeat(10_000) })
        .to_string();
    let burst: Vec<_> = (0..64).map(|_| Ok(Message::text(ping.clone()))).collect();
    client
        .send_all(&mut futures_util::stream::iter(burst))
        .await
        .expect("burst");
    for i in 0..64 {
        let pong = json(&recv_text(&mut client).await);
        assert_eq!(pong["event"], "pusher:pong", "answer {i}");
    }
    server.shutdown().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn close_notify_and_garbage_end_only_their_own_connection() {
    let (server, dir) = start_tls().await;
    let mut bystander = wss(server.addr, "/app/resonance-key?protocol=7", 1 << 20).await;
    recv_text(&mut bystander).await;

    // TLS close_notify without a WebSocket close: the server ends the connection.
    let mut polite = tls_connect(server.addr).await;
    let (mut ws, _) = tokio_websockets::ClientBuilder::new()
        .uri(&format!(
            "wss://{}/app/resonance-key?protocol=7",
            server.addr
        ))
        .expect("uri")
        .connect_on(tls_connect(server.addr).await)
        .await
        .expect("upgrade");
    recv(&mut ws).await.expect("connection_established");
    let mut stream = ws.into_inner();
    stream.shutdown().await.expect("close_notify");
    let mut rest = Vec::new();
    let read = tokio::time::timeout(TIMEOUT, stream.read_to_end(&mut rest)).await;
    assert!(read.is_ok(), "the server closed after close_notify");
    polite.shutdown().await.ok();

    // Bytes that are not TLS records after the handshake: that connection
    // fails, the server keeps serving.
    let mut rude = tls_connect(server.addr).await;
    rude.write_all(b"GET /app/resonance-key?protocol=7 HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
        .await
        .expect("upgrade request");
    let mut head = [0u8; 512];
    let n = rude.read(&mut head).await.expect("101");
    assert!(head[..n].starts_with(b"HTTP/1.1 101"));
    let (tcp, _) = rude.get_mut();
    tcp.write_all(&[0x17, 0x03, 0x03, 0x00, 0x20])
        .await
        .expect("raw write");
    tcp.write_all(&[0xAB; 32]).await.expect("raw write");
    let mut sink = Vec::new();
    let ended = tokio::time::timeout(TIMEOUT, tcp.read_to_end(&mut sink)).await;
    assert!(ended.is_ok(), "the server dropped the corrupted connection");

    // The bystander still gets answers.
    send(&mut bystander, r#"{"event":"pusher:ping","data":{}}"#).await;
    assert_eq!(
        json(&recv_text(&mut bystander).await)["event"],
        "pusher:pong"
    );
    server.shutdown().await;
    let _ = std::fs::remove_dir_all(dir);
}
