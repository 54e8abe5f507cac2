//! Pusher protocol client side: connect, subscribe, read deliveries, sign.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::net::{TcpSocket, TcpStream};
use tokio_websockets::{ClientBuilder, Message, WebSocketStream};

use crate::sio::{self, Proto};
use crate::stats::{self, Fail, H, K};
use crate::tls::Stream;

pub type Ws = WebSocketStream<Stream>;

/// `scheme://host:port/prefix` split into its parts.
pub struct Url {
    pub scheme: String,
    pub host: String,
    pub port: u16,
    /// Path prefix without a trailing slash ("" for none).
    pub prefix: String,
}

pub fn parse_url(url: &str) -> Result<Url, String> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| format!("bad url {url:?}: no scheme"))?;
    let (auth, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let default_port = match scheme {
        "ws" | "http" => 80,
        "wss" | "https" => 443,
        _ => return Err(format!("bad url {url:?}: unknown scheme {scheme}")),
    };
    let (host, port) = if let Some(r) = auth.strip_prefix('[') {
        let (h, after) = r
            .split_once(']')
            .ok_or_else(|| format!("bad url {url:?}"))?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().map_err(|_| format!("bad port in {url:?}"))?,
            None => default_port,
        };
        (h.to_string(), port)
    } else {
        match auth.rsplit_once(':') {
            Some((h, p)) => (
                h.to_string(),
                p.parse().map_err(|_| format!("bad port in {url:?}"))?,
            ),
            None => (auth.to_string(), default_port),
        }
    };
    Ok(Url {
        scheme: scheme.to_string(),
        host,
        port,
        prefix: path.trim_end_matches('/').to_string(),
    })
}

pub async fn resolve(host: &str, port: u16) -> Result<SocketAddr, String> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| format!("cannot resolve {host}: {e}"))?
        .collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or(addrs.first())
        .copied()
        .ok_or_else(|| format!("cannot resolve {host}"))
}

/// Where and how to open Pusher connections. Several comma-separated URLs
/// (the nodes of a cluster) are used round-robin, one per connection.
pub struct Target {
    /// Address, upgrade request, TLS (`wss://`) and the host name for it.
    endpoints: Vec<(SocketAddr, ClientBuilder<'static>, bool, String)>,
    next_endpoint: AtomicUsize,
    sources: Vec<IpAddr>,
    next_src: AtomicUsize,
    pub key: String,
    pub secret: String,
    pub timeout: Duration,
}

impl Target {
    pub async fn new(
        url: &str,
        key: &str,
        secret: &str,
        source_ips: u8,
        timeout: Duration,
    ) -> Result<Self, String> {
        let mut endpoints = Vec::new();
        for url in url.split(',').map(str::trim).filter(|u| !u.is_empty()) {
            let u = parse_url(url)?;
            if u.scheme != "ws" && u.scheme != "wss" {
                return Err(format!("only ws:// and wss:// are supported, got {url}"));
            }
            let addr = resolve(&u.host, u.port).await?;
            let host = if u.host.contains(':') {
                format!("[{}]", u.host)
            } else {
                u.host.clone()
            };
            let uri = match sio::proto() {
                Proto::Pusher => format!(
                    "{}://{host}:{}{}/app/{key}?protocol=7&client=js&version=8.4.0&flash=false",
                    u.scheme, u.port, u.prefix
                ),
                p => format!(
                    "{}://{host}:{}{}{}",
                    u.scheme,
                    u.port,
                    u.prefix,
                    sio::ws_path(p)
                ),
            };
            let builder = ClientBuilder::new()
                .uri(&uri)
                .map_err(|e| format!("bad websocket uri {uri}: {e}"))?;
            endpoints.push((addr, builder, u.scheme == "wss", u.host.clone()));
        }
        let Some(&(addr, ..)) = endpoints.first() else {
            return Err("no --url given".into());
        };
        // Spread connections over several loopback source addresses so that more than one
        // ephemeral port range is available (each source address has its own).
        let sources = match addr.ip() {
            IpAddr::V4(ip) if ip.is_loopback() && source_ips > 0 => (1..=source_ips)
                .map(|i| IpAddr::V4(Ipv4Addr::new(127, 0, 0, i)))
                .collect(),
            _ => Vec::new(),
        };
        Ok(Target {
            endpoints,
            next_endpoint: AtomicUsize::new(0),
            sources,
            next_src: AtomicUsize::new(0),
            key: key.to_string(),
            secret: secret.to_string(),
            timeout,
        })
    }

    async fn tcp(&self, addr: SocketAddr) -> Result<TcpStream, Fail> {
        let sock = if addr.is_ipv4() {
            TcpSocket::new_v4()
        } else {
            TcpSocket::new_v6()
        }
        .map_err(|_| Fail::Connect)?;
        if !self.sources.is_empty() {
            let src = self.sources[self.next_src.fetch_add(1, Relaxed) % self.sources.len()];
            bind_no_port(&sock);
            sock.bind(SocketAddr::new(src, 0))
                .map_err(|_| Fail::Connect)?;
        }
        let s = sock.connect(addr).await.map_err(|e| {
            if e.kind() == std::io::ErrorKind::ConnectionRefused {
                Fail::Refused
            } else {
                Fail::Connect
            }
        })?;
        let _ = s.set_nodelay(true);
        Ok(s)
    }

    /// TCP connect, WebSocket upgrade, wait for `pusher:connection_established`.
    /// Returns the stream and the socket id.
    pub async fn open(&self) -> Result<(Ws, String), Fail> {
        let i = self.next_endpoint.fetch_add(1, Relaxed) % self.endpoints.len();
        let (addr, builder, tls, host) = &self.endpoints[i];
        let stream = self.tcp(*addr).await?;
        let stream = Stream::new(stream, *tls, host)
            .await
            .map_err(|_| Fail::Handshake)?;
        let (mut ws, _) = builder
            .connect_on(stream)
            .await
            .map_err(|_| Fail::Handshake)?;
        if sio::proto() != Proto::Pusher {
            let sid = sio::handshake(&mut ws, sio::proto()).await?;
            return Ok((ws, sid));
        }
        loop {
            let m = read_text(&mut ws).await?;
            let Some(text) = m.as_text() else { continue };
            let Some(ctl) = Ctl::parse(text) else {
                return Err(Fail::Protocol);
            };
            match ctl.event.as_str() {
                "pusher:connection_established" => {
                    let id = ctl.data.get("socket_id").and_then(Value::as_str);
                    return match id {
                        Some(id) => Ok((ws, id.to_string())),
                        None => Err(Fail::Protocol),
                    };
                }
                // e.g. 4001 unknown app, 4004 over quota: the close follows.
                "pusher:error" => stats::inc(K::PusherErrors),
                _ => {}
            }
        }
    }

    /// Open a connection and subscribe it to a public channel, within the timeout.
    /// Counts the attempt, the failure kind, and the connect+subscribe latency.
    pub async fn connect_subscribe(&self, channel: &str) -> Result<Ws, Fail> {
        stats::inc(K::Attempted);
        let t0 = Instant::now();
        let r = tokio::time::timeout(self.timeout, async {
            let (mut ws, _) = self.open().await?;
            if sio::proto() == Proto::Pusher {
                subscribe(&mut ws, channel, None, None, |_| {}).await?;
            } else {
                // Echo's protocol has no answer to a public subscribe: the caller
                // checks the server's subscription counts before publishing.
                sio::subscribe(&mut ws, channel).await?;
            }
            Ok::<_, Fail>(ws)
        })
        .await
        .unwrap_or(Err(Fail::Timeout));
        match r {
            Ok(ws) => {
                stats::record(H::Connect, t0.elapsed().as_micros() as u64);
                stats::inc(K::Subscribed);
                stats::inc(K::Alive);
                Ok(ws)
            }
            Err(f) => {
                stats::fail(f);
                Err(f)
            }
        }
    }
}

#[cfg(target_os = "linux")]
fn bind_no_port(sock: &TcpSocket) {
    use std::os::fd::AsRawFd;
    let one: libc::c_int = 1;
    // SAFETY: valid fd, option value points to a c_int of the given size. Failure is harmless
    // (the kernel then picks the port at bind time).
    unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            &one as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}
#[cfg(not(target_os = "linux"))]
fn bind_no_port(_sock: &TcpSocket) {}

/// Next text message; close or error → `Fail::Closed`.
async fn read_text(ws: &mut Ws) -> Result<Message, Fail> {
    loop {
        match ws.next().await {
            Some(Ok(m)) if m.is_text() => return Ok(m),
            Some(Ok(m)) if m.is_close() => return Err(Fail::Closed),
            Some(Ok(_)) => continue,
            Some(Err(_)) | None => return Err(Fail::Closed),
        }
    }
}

/// A small control message, `data` decoded when it is a JSON-encoded string.
pub struct Ctl {
    pub event: String,
    pub channel: Option<String>,
    pub data: Value,
}

impl Ctl {
    pub fn parse(text: &str) -> Option<Ctl> {
        let mut v: Value = serde_json::from_str(text).ok()?;
        let event = v.get("event")?.as_str()?.to_string();
        let channel = v.get("channel").and_then(Value::as_str).map(str::to_string);
        let data = match v.get_mut("data").map(Value::take) {
            Some(Value::String(s)) => serde_json::from_str(&s).unwrap_or(Value::String(s)),
            Some(other) => other,
            None => Value::Null,
        };
        Some(Ctl {
            event,
            channel,
            data,
        })
    }
}

/// The event name of a frame, found by scanning (no JSON parse).
pub fn event_name(b: &[u8]) -> Option<&[u8]> {
    let pat = b"\"event\":";
    let i = find(b, pat)? + pat.len();
    let rest = &b[i..];
    let start = rest.iter().position(|&c| c != b' ')?;
    let rest = rest[start..].strip_prefix(b"\"")?;
    let end = rest.iter().position(|&c| c == b'"')?;
    Some(&rest[..end])
}

#[inline]
fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    let first = *needle.first()?;
    let mut i = 0;
    while i + needle.len() <= hay.len() {
        match hay[i..=hay.len() - needle.len()]
            .iter()
            .position(|&c| c == first)
        {
            Some(p) => {
                i += p;
                if &hay[i..i + needle.len()] == needle {
                    return Some(i);
                }
                i += 1;
            }
            None => return None,
        }
    }
    None
}

/// The send timestamp of a benchmark delivery: the `t` member of the event data, which
/// arrives JSON-encoded inside a string (`"data":"{\"t\":123,...}"`); also accepts a plain
/// `"t":123` in case a server sends data as an object.
#[inline]
pub fn scan_ts(b: &[u8]) -> Option<u64> {
    let (i, n) = match find(b, b"\\\"t\\\":") {
        Some(i) => (i, 6),
        None => (find(b, b"\"t\":")?, 4),
    };
    let digits = &b[i + n..];
    let mut v: u64 = 0;
    let mut any = false;
    for &c in digits.iter().take(20) {
        if c.is_ascii_digit() {
            v = v.checked_mul(10)?.checked_add((c - b'0') as u64)?;
            any = true;
        } else {
            break;
        }
    }
    any.then_some(v)
}

/// Send `pusher:subscribe` and wait for `pusher_internal:subscription_succeeded`.
/// Returns the decoded `data` of the success message (the presence roster on presence channels).
/// Other text frames read meanwhile are handed to `other`.
pub async fn subscribe(
    ws: &mut Ws,
    channel: &str,
    auth: Option<&str>,
    channel_data: Option<&str>,
    mut other: impl FnMut(&[u8]),
) -> Result<Value, Fail> {
    let mut data = json!({ "channel": channel });
    if let Some(a) = auth {
        data["auth"] = json!(a);
    }
    if let Some(cd) = channel_data {
        data["channel_data"] = json!(cd);
    }
    let msg = json!({"event": "pusher:subscribe", "data": data}).to_string();
    ws.send(Message::text(msg))
        .await
        .map_err(|_| Fail::Closed)?;
    loop {
        let m = read_text(ws).await?;
        let b: &[u8] = m.as_payload();
        match event_name(b) {
            Some(b"pusher_internal:subscription_succeeded")
            | Some(b"pusher:subscription_error") => {
                let Some(ctl) = m.as_text().and_then(Ctl::parse) else {
                    return Err(Fail::Protocol);
                };
                if ctl.channel.as_deref() != Some(channel) {
                    continue;
                }
                if ctl.event == "pusher:subscription_error" {
                    return Err(Fail::SubscribeError);
                }
                return Ok(ctl.data);
            }
            Some(b"pusher:ping") => pong(ws).await?,
            Some(b"pusher:error") => stats::inc(K::PusherErrors),
            _ => other(b),
        }
    }
}

async fn pong(ws: &mut Ws) -> Result<(), Fail> {
    ws.send(Message::text(r#"{"event":"pusher:pong","data":{}}"#))
        .await
        .map_err(|_| Fail::Closed)
}

/// What a received message meant.
pub enum Step {
    /// A benchmark delivery (already counted and recorded).
    Delivery,
    /// Some other text frame (returned for the caller to inspect).
    Other(Message),
    /// Nothing of interest (control frame, ping answered).
    Nothing,
    /// The connection is gone (close code if the server sent one).
    Closed(Option<u16>),
}

/// Handle one item of the stream: deliveries are timed and counted into `counter`,
/// `pusher:ping` is answered.
pub async fn on_item(
    ws: &mut Ws,
    item: Option<Result<Message, tokio_websockets::Error>>,
    counter: K,
) -> Step {
    match item {
        Some(Ok(m)) if m.is_text() => {
            let b: &[u8] = m.as_payload();
            if let Some(ts) = scan_ts(b) {
                stats::record(H::Delivery, stats::now_micros().saturating_sub(ts));
                stats::inc(counter);
                return Step::Delivery;
            }
            if b == b"2" {
                // Engine.IO 4: the server's ping.
                if sio::pong(ws).await.is_err() {
                    return Step::Closed(None);
                }
                return Step::Nothing;
            }
            match event_name(b) {
                Some(b"pusher:ping") => {
                    if pong(ws).await.is_err() {
                        return Step::Closed(None);
                    }
                    Step::Nothing
                }
                Some(b"pusher:error") => {
                    stats::inc(K::PusherErrors);
                    Step::Other(m)
                }
                _ => Step::Other(m),
            }
        }
        Some(Ok(m)) if m.is_close() => Step::Closed(m.as_close().map(|(c, _)| u16::from(c))),
        Some(Ok(_)) => Step::Nothing,
        Some(Err(_)) | None => Step::Closed(None),
    }
}

/// Read until the connection closes; counts deliveries into `counter`.
/// Returns the close code, if any.
pub async fn drain(ws: &mut Ws, counter: K) -> Option<u16> {
    if sio::proto() == Proto::Eio3 {
        // Engine.IO 3: the client pings.
        let start = tokio::time::Instant::now() + sio::EIO3_PING;
        let mut tick = tokio::time::interval_at(start, sio::EIO3_PING);
        loop {
            tokio::select! {
                item = ws.next() => {
                    if let Step::Closed(code) = on_item(ws, item, counter).await {
                        return code;
                    }
                }
                _ = tick.tick() => {
                    if sio::ping(ws).await.is_err() {
                        return None;
                    }
                }
            }
        }
    }
    loop {
        let item = ws.next().await;
        if let Step::Closed(code) = on_item(ws, item, counter).await {
            return code;
        }
    }
}

/// Book-keeping when a subscribed connection was lost.
pub fn lost(code: Option<u16>) {
    stats::dec(K::Alive);
    stats::inc(K::Dropped);
    stats::CLOSE_CODES.add(code.unwrap_or(1006));
}

pub fn hmac_hex(secret: &str, msg: &str) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC accepts keys of any length");
    mac.update(msg.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// Channel auth for private (`channel_data` None) and presence channels.
pub fn channel_auth(
    key: &str,
    secret: &str,
    socket_id: &str,
    channel: &str,
    channel_data: Option<&str>,
) -> String {
    let s = match channel_data {
        Some(cd) => format!("{socket_id}:{channel}:{cd}"),
        None => format!("{socket_id}:{channel}"),
    };
    format!("{key}:{}", hmac_hex(secret, &s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_auth_vector() {
        assert_eq!(
            channel_auth(
                "278d425bdf160c739803",
                "7ad3773142a6692b25b8",
                "1234.1234",
                "private-foobar",
                None
            ),
            "278d425bdf160c739803:58df8b0c36d6982b82c3ecf6b4662e34fe8c25bba48f5369f135bf843651c3a4"
        );
    }

    #[test]
    fn scans_timestamp() {
        let f =
            br#"{"event":"bench","channel":"b-1","data":"{\"t\":1700000000123456,\"p\":\"xx\"}"}"#;
        assert_eq!(scan_ts(f), Some(1_700_000_000_123_456));
        assert_eq!(event_name(f), Some(&b"bench"[..]));
        let g = br#"{"channel":"b-1","event": "bench","data":{"t":42}}"#;
        assert_eq!(scan_ts(g), Some(42));
        assert_eq!(event_name(g), Some(&b"bench"[..]));
        assert_eq!(scan_ts(br#"{"event":"pusher:ping","data":"{}"}"#), None);
        assert_eq!(scan_ts(br#"{"data":"{\"t\":x}"}"#), None);
    }

    #[test]
    fn parses_urls() {
        let u = parse_url("ws://127.0.0.1:6001").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.prefix.as_str()),
            ("127.0.0.1", 6001, "")
        );
        let u = parse_url("http://[::1]:7/x/").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.prefix.as_str()),
            ("::1", 7, "/x")
        );
        assert_eq!(parse_url("ws://localhost").unwrap().port, 80);
        assert!(parse_url("127.0.0.1:6001").is_err());
    }
}
