//! Socket.IO clients as laravel-echo's socket.io connector speaks it (Engine.IO 4 as
//! socket.io-client 4.x, Engine.IO 3 as socket.io-client 2.x, both over WebSocket), and the
//! two publish paths laravel-echo-server users have besides the Pusher API: Laravel's
//! `redis` broadcaster (`PUBLISH <prefix><channel> {"event","data","socket"}`) and the
//! laravel-echo-server HTTP API (`POST /apps/{id}/events` with a Bearer key).

use std::io;
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_websockets::Message;

use crate::pusher::{Ws, parse_url, resolve};
use crate::stats::Fail;

/// The wire the subscribers speak.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Proto {
    /// Pusher protocol 7 on `/app/{key}`.
    Pusher,
    /// Socket.IO 5 over Engine.IO 4 (socket.io-client 3.x/4.x), WebSocket only.
    Eio4,
    /// Socket.IO 4 over Engine.IO 3 (socket.io-client 2.x, laravel-echo-server's), WebSocket.
    Eio3,
}

/// How the publisher sends events.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Publish {
    /// Signed Pusher HTTP API (`POST /apps/{id}/events?auth_signature=...`).
    Api,
    /// laravel-echo-server HTTP API (`POST /apps/{id}/events`, `Authorization: Bearer`).
    EchoApi,
    /// Laravel's `redis` broadcaster: `PUBLISH <prefix><channel>` on `--redis`.
    Redis,
}

static PROTO: OnceLock<Proto> = OnceLock::new();

pub fn set_proto(p: Proto) {
    let _ = PROTO.set(p);
}

pub fn proto() -> Proto {
    *PROTO.get().unwrap_or(&Proto::Pusher)
}

/// The WebSocket path (and query) of the Engine.IO endpoint.
pub fn ws_path(p: Proto) -> &'static str {
    match p {
        Proto::Eio3 => "/socket.io/?EIO=3&transport=websocket",
        _ => "/socket.io/?EIO=4&transport=websocket",
    }
}

async fn read_text(ws: &mut Ws) -> Result<String, Fail> {
    loop {
        match ws.next().await {
            Some(Ok(m)) if m.is_text() => return Ok(m.as_text().unwrap_or_default().to_string()),
            Some(Ok(m)) if m.is_close() => return Err(Fail::Closed),
            Some(Ok(_)) => continue,
            Some(Err(_)) | None => return Err(Fail::Closed),
        }
    }
}

/// After the upgrade: the Engine.IO open packet, then the namespace connect (EIO4 asks
/// with `40`, EIO3 servers send `40` unasked). Returns the session id.
pub async fn handshake(ws: &mut Ws, p: Proto) -> Result<String, Fail> {
    let open = read_text(ws).await?;
    let Some(json) = open.strip_prefix('0') else {
        return Err(Fail::Protocol);
    };
    let sid = serde_json::from_str::<serde_json::Value>(json)
        .ok()
        .and_then(|v| v.get("sid").and_then(|s| s.as_str()).map(str::to_string))
        .ok_or(Fail::Protocol)?;
    if p == Proto::Eio4 {
        ws.send(Message::text("40"))
            .await
            .map_err(|_| Fail::Closed)?;
    }
    loop {
        let m = read_text(ws).await?;
        if m.starts_with("40") {
            return Ok(sid);
        }
        if m.starts_with("44") {
            return Err(Fail::Protocol);
        }
        if m == "2" {
            pong(ws).await?;
        }
    }
}

/// Echo's `subscribe` event. The protocol has no answer for a public channel.
pub async fn subscribe(ws: &mut Ws, channel: &str) -> Result<(), Fail> {
    let msg = format!(r#"42["subscribe",{{"channel":"{channel}","auth":{{"headers":{{}}}}}}]"#);
    ws.send(Message::text(msg)).await.map_err(|_| Fail::Closed)
}

pub async fn pong(ws: &mut Ws) -> Result<(), Fail> {
    ws.send(Message::text("3")).await.map_err(|_| Fail::Closed)
}

/// Engine.IO 3 clients ping the server (`2`) every ping interval.
pub async fn ping(ws: &mut Ws) -> Result<(), Fail> {
    ws.send(Message::text("2")).await.map_err(|_| Fail::Closed)
}

/// EIO3 client ping interval (the server's default pingInterval).
pub const EIO3_PING: Duration = Duration::from_secs(25);

/// The laravel-echo-server event body; `data` is an object (that API decodes strings too).
pub fn echo_api_body(channel: &str, ts: u64, pad: &str) -> Vec<u8> {
    format!(r#"{{"name":"bench","channel":"{channel}","data":{{"t":{ts},"p":"{pad}"}}}}"#)
        .into_bytes()
}

/// What Laravel's RedisBroadcaster publishes.
pub fn laravel_payload(ts: u64, pad: &str) -> Vec<u8> {
    format!(r#"{{"event":"bench","data":{{"t":{ts},"p":"{pad}"}},"socket":null}}"#).into_bytes()
}

/// `POST /apps/{id}/events` with a Bearer key, over a keep-alive connection.
pub fn echo_api_request(
    host_header: &str,
    prefix: &str,
    app_id: &str,
    key: &str,
    body: &[u8],
) -> Vec<u8> {
    let mut req = format!(
        "POST {prefix}/apps/{app_id}/events HTTP/1.1\r\nHost: {host_header}\r\nAuthorization: Bearer {key}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(body);
    req
}

/// A Redis connection that PUBLISHes (RESP by hand; one reply per command).
pub struct RedisPub {
    stream: TcpStream,
    buf: Vec<u8>,
}

pub async fn redis_addr(url: &str) -> Result<SocketAddr, String> {
    let u = url.strip_prefix("redis://").unwrap_or(url);
    let u = parse_url(&format!("http://{u}"))?;
    resolve(&u.host, if u.port == 80 { 6379 } else { u.port }).await
}

impl RedisPub {
    pub async fn connect(addr: SocketAddr) -> io::Result<RedisPub> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(RedisPub {
            stream,
            buf: Vec::with_capacity(64),
        })
    }

    /// PUBLISH; returns the number of receivers Redis reports.
    pub async fn publish(&mut self, channel: &[u8], payload: &[u8]) -> io::Result<i64> {
        let mut cmd = Vec::with_capacity(payload.len() + channel.len() + 48);
        cmd.extend_from_slice(b"*3\r\n$7\r\nPUBLISH\r\n$");
        cmd.extend_from_slice(channel.len().to_string().as_bytes());
        cmd.extend_from_slice(b"\r\n");
        cmd.extend_from_slice(channel);
        cmd.extend_from_slice(b"\r\n$");
        cmd.extend_from_slice(payload.len().to_string().as_bytes());
        cmd.extend_from_slice(b"\r\n");
        cmd.extend_from_slice(payload);
        cmd.extend_from_slice(b"\r\n");
        self.stream.write_all(&cmd).await?;
        self.buf.clear();
        loop {
            if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line = &self.buf[..i];
                return match line.first() {
                    Some(b':') => std::str::from_utf8(&line[1..])
                        .ok()
                        .and_then(|s| s.parse().ok())
                        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "bad reply")),
                    _ => Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        String::from_utf8_lossy(line).into_owned(),
                    )),
                };
            }
            let mut tmp = [0u8; 256];
            let n = self.stream.read(&mut tmp).await?;
            if n == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            self.buf.extend_from_slice(&tmp[..n]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pusher::scan_ts;

    #[test]
    fn bodies_carry_the_timestamp() {
        let b = laravel_payload(1_700_000_000_000_001, "xx");
        let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(v["data"]["t"], 1_700_000_000_000_001u64);
        let b = echo_api_body("c", 5, "");
        let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(v["data"]["t"], 5);
        // What a Socket.IO subscriber gets.
        assert_eq!(
            scan_ts(br#"42["bench","c-1",{"t":1700000000123456,"p":"xx"}]"#),
            Some(1_700_000_000_123_456)
        );
    }
}
