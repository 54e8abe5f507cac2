//! Helpers shared by the integration tests: start a real server on port 0,
//! speak WebSocket frames by hand over TCP (for malformed input), and call
//! the HTTP API signed as a Pusher SDK signs it.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use resonance::config::Config;
use resonance::custom::Builder;
use resonance::server::Server;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

pub const TIMEOUT: Duration = Duration::from_secs(5);

/// A config for an in-process server on a free loopback port.
pub fn config() -> Config {
    let mut c = Config::default();
    c.server.host = "127.0.0.1".into();
    c.server.port = 0;
    c.server.shutdown_grace = 3;
    c
}

/// A running server; dropping `stop` (or sending on it) shuts it down.
pub struct Running {
    pub addr: SocketAddr,
    pub rooms: resonance::custom::Rooms,
    pub stop: Option<oneshot::Sender<()>>,
    pub done: tokio::task::JoinHandle<()>,
}

impl Running {
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = tokio::time::timeout(Duration::from_secs(10), &mut self.done).await;
    }
}

pub async fn start(builder: Builder) -> Running {
    start_server(builder.bind().await.expect("bind")).await
}

pub async fn start_server(server: Server) -> Running {
    let addr = server.local_addr().expect("local addr");
    let rooms = server.rooms(None).expect("rooms of the first app");
    let (tx, rx) = oneshot::channel::<()>();
    let done = tokio::spawn(server.run(async move {
        let _ = rx.await;
    }));
    Running {
        addr,
        rooms,
        stop: Some(tx),
        done,
    }
}

/// A WebSocket client connection (tokio-websockets).
pub type Client = tokio_websockets::WebSocketStream<tokio_websockets::MaybeTlsStream<TcpStream>>;

pub async fn connect(addr: SocketAddr, path: &str) -> Client {
    try_connect(addr, path).await.expect("websocket connect")
}

pub async fn try_connect(addr: SocketAddr, path: &str) -> Result<Client, tokio_websockets::Error> {
    let uri = format!("ws://{addr}{path}");
    let (client, _) = tokio_websockets::ClientBuilder::new()
        .uri(&uri)
        .expect("uri")
        .connect()
        .await?;
    Ok(client)
}

/// The next message, failing the test after [`TIMEOUT`].
pub async fn next(client: &mut Client) -> Option<tokio_websockets::Message> {
    use futures_util::StreamExt;
    match tokio::time::timeout(TIMEOUT, client.next()).await {
        Ok(Some(Ok(m))) => Some(m),
        Ok(Some(Err(_))) | Ok(None) => None,
        Err(_) => panic!("no message within {TIMEOUT:?}"),
    }
}

/// The next text message (skipping nothing), as a String.
pub async fn next_text(client: &mut Client) -> String {
    let m = next(client).await.expect("a message");
    m.as_text().expect("a text message").to_string()
}

/// Asserts that nothing arrives within `wait`.
pub async fn assert_silent(client: &mut Client, wait: Duration) {
    use futures_util::StreamExt;
    if let Ok(m) = tokio::time::timeout(wait, client.next()).await {
        panic!("expected nothing, got {m:?}");
    }
}

pub async fn send_text(client: &mut Client, text: &str) {
    use futures_util::SinkExt;
    client
        .send(tokio_websockets::Message::text(text.to_string()))
        .await
        .expect("send");
}

/// Sends an HTTP request and returns the status and the raw response.
pub async fn http(addr: SocketAddr, request: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut out = Vec::new();
    let _ = tokio::time::timeout(TIMEOUT, stream.read_to_end(&mut out)).await;
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, text)
}

pub async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    http(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
    )
    .await
}

/// A signed `POST /apps/100000/events` (the default app's credentials).
pub async fn trigger(addr: SocketAddr, channel: &str, event: &str, data: &str) -> (u16, String) {
    let body =
        serde_json::json!({ "name": event, "channels": [channel], "data": data }).to_string();
    let path = "/apps/100000/events";
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let query = format!(
        "auth_key=resonance-key&auth_timestamp={now}&auth_version=1.0&body_md5={}",
        resonance::signing::md5_hex(body.as_bytes())
    );
    let signature = resonance::signing::hmac_sha256_hex(
        "resonance-secret",
        format!("POST\n{path}\n{query}").as_bytes(),
    );
    let request = format!(
        "POST {path}?{query}&auth_signature={signature} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    http(addr, &request).await
}

/// A WebSocket spoken by hand, for frames no client library would send.
pub struct Raw {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl Raw {
    /// Upgrades `path`, with extra header lines (each ending in `\r\n`);
    /// returns the connection and the response head.
    pub async fn connect(addr: SocketAddr, path: &str, extra: &str) -> (Option<Raw>, String) {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
        );
        stream.write_all(request.as_bytes()).await.expect("write");
        let mut buf = Vec::new();
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let mut chunk = [0u8; 1024];
            let n = tokio::time::timeout(TIMEOUT, stream.read(&mut chunk))
                .await
                .expect("response in time")
                .expect("read");
            if n == 0 {
                return (None, String::from_utf8_lossy(&buf).into_owned());
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        let rest = buf[head_end..].to_vec();
        if !head.starts_with("HTTP/1.1 101") {
            return (None, head);
        }
        (Some(Raw { stream, buf: rest }), head)
    }

    /// Writes one frame: `first` is FIN/RSV/opcode, masked unless `mask` is false.
    pub async fn frame(&mut self, first: u8, payload: &[u8], mask: bool) {
        let mut out = vec![first];
        let m = if mask { 0x80 } else { 0 };
        match payload.len() {
            n if n < 126 => out.push(m | n as u8),
            n if n <= 0xFFFF => {
                out.push(m | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(m | 127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        if mask {
            let key = [0x12u8, 0x34, 0x56, 0x78];
            out.extend_from_slice(&key);
            out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        } else {
            out.extend_from_slice(payload);
        }
        // The server may already have closed: that is what some tests expect.
        let _ = self.stream.write_all(&out).await;
    }

    /// Reads one frame: (FIN, opcode, payload); `None` when the connection ended.
    pub async fn read(&mut self) -> Option<RawFrame> {
        loop {
            if let Some((frame, used)) = parse_frame(&self.buf) {
                self.buf.drain(..used);
                return Some(frame);
            }
            let mut chunk = [0u8; 8192];
            let n = tokio::time::timeout(TIMEOUT, self.stream.read(&mut chunk))
                .await
                .expect("frame in time")
                .ok()?;
            if n == 0 {
                return None;
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Reads frames until a close frame; returns its code and reason.
    pub async fn close_code(&mut self) -> Option<(u16, String)> {
        while let Some((_, opcode, payload)) = self.read().await {
            if opcode == 0x8 {
                if payload.len() < 2 {
                    return Some((1005, String::new()));
                }
                let code = u16::from_be_bytes([payload[0], payload[1]]);
                return Some((code, String::from_utf8_lossy(&payload[2..]).into_owned()));
            }
        }
        None
    }
}

/// FIN, opcode, payload.
pub type RawFrame = (bool, u8, Vec<u8>);

fn parse_frame(buf: &[u8]) -> Option<(RawFrame, usize)> {
    if buf.len() < 2 {
        return None;
    }
    let fin = buf[0] & 0x80 != 0;
    let opcode = buf[0] & 0x0F;
    let (len, mut at) = match buf[1] & 0x7F {
        126 => (u16::from_be_bytes([*buf.get(2)?, *buf.get(3)?]) as usize, 4),
        127 => {
            let b: [u8; 8] = buf.get(2..10)?.try_into().ok()?;
            (u64::from_be_bytes(b) as usize, 10)
        }
        n => (n as usize, 2),
    };
    if buf[1] & 0x80 != 0 {
        at += 4; // servers never mask, but skip a mask if present
    }
    let payload = buf.get(at..at + len)?.to_vec();
    Some(((fin, opcode, payload), at + len))
}
