//! A minimal HTTP/1.1 keep-alive client for the signed Pusher HTTP API.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use md5::{Digest, Md5};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::pusher::{hmac_hex, parse_url, resolve};
use crate::tls::Stream;

/// The HTTP API of one app.
pub struct Api {
    addr: SocketAddr,
    /// `https://`: TLS to `host`.
    tls: bool,
    host: String,
    host_header: String,
    prefix: String,
    app_id: String,
    key: String,
    secret: String,
}

impl Api {
    pub async fn new(base: &str, app_id: &str, key: &str, secret: &str) -> Result<Api, String> {
        let u = parse_url(base)?;
        if u.scheme != "http" && u.scheme != "https" {
            return Err(format!(
                "only http:// and https:// are supported for the API, got {base}"
            ));
        }
        let addr = resolve(&u.host, u.port).await?;
        let host = if u.host.contains(':') {
            format!("[{}]", u.host)
        } else {
            u.host.clone()
        };
        Ok(Api {
            addr,
            tls: u.scheme == "https",
            host: u.host.clone(),
            host_header: format!("{host}:{}", u.port),
            prefix: u.prefix,
            app_id: app_id.to_string(),
            key: key.to_string(),
            secret: secret.to_string(),
        })
    }

    pub async fn connect(&self) -> io::Result<HttpConn> {
        let s = TcpStream::connect(self.addr).await?;
        s.set_nodelay(true)?;
        Ok(HttpConn {
            stream: Stream::new(s, self.tls, &self.host).await?,
            buf: Vec::with_capacity(4096),
            req: Vec::with_capacity(1024),
            closed: false,
            body: Vec::new(),
        })
    }

    /// Full signed request line target for `POST /apps/{id}/events`.
    fn events_target(&self, body: &[u8], ts: u64) -> String {
        let path = format!("{}/apps/{}/events", self.prefix, self.app_id);
        // The signature covers the path as the server sees it, without our prefix.
        let signed_path = format!("/apps/{}/events", self.app_id);
        let q = sign_query(&self.key, &self.secret, "POST", &signed_path, body, ts);
        format!("{path}?{q}")
    }

    /// Publish one event on one channel. Returns the HTTP status, or the `code` of an error
    /// body sent with a 2xx status (some servers answer errors as 200 `{"error":..,"code":401}`).
    pub async fn publish(&self, conn: &mut HttpConn, body: &[u8]) -> io::Result<u16> {
        let target = self.events_target(body, crate::stats::now_micros() / 1_000_000);
        conn.req.clear();
        conn.req.extend_from_slice(b"POST ");
        conn.req.extend_from_slice(target.as_bytes());
        conn.req.extend_from_slice(b" HTTP/1.1\r\nHost: ");
        conn.req.extend_from_slice(self.host_header.as_bytes());
        conn.req
            .extend_from_slice(b"\r\nContent-Type: application/json\r\nContent-Length: ");
        conn.req
            .extend_from_slice(body.len().to_string().as_bytes());
        conn.req.extend_from_slice(b"\r\n\r\n");
        conn.req.extend_from_slice(body);
        let status = conn.roundtrip().await?;
        Ok(effective_status(status, &conn.body))
    }
}

impl Api {
    /// laravel-echo-server API: `POST /apps/{id}/events` with `Authorization: Bearer`.
    pub async fn publish_echo(
        &self,
        conn: &mut HttpConn,
        key: &str,
        body: &[u8],
    ) -> io::Result<u16> {
        conn.req =
            crate::sio::echo_api_request(&self.host_header, &self.prefix, &self.app_id, key, body);
        let status = conn.roundtrip().await?;
        Ok(effective_status(status, &conn.body))
    }

    /// laravel-echo-server API: `GET /apps/{id}/channels` (Bearer); status and body.
    pub async fn echo_channels(
        &self,
        conn: &mut HttpConn,
        key: &str,
    ) -> io::Result<(u16, Vec<u8>)> {
        conn.req = format!(
            "GET {}/apps/{}/channels HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {key}\r\n\r\n",
            self.prefix, self.app_id, self.host_header
        )
        .into_bytes();
        let status = conn.roundtrip().await?;
        Ok((status, std::mem::take(&mut conn.body)))
    }
}

fn effective_status(status: u16, body: &[u8]) -> u16 {
    if !(200..300).contains(&status) || !body.windows(7).any(|w| w == b"\"error\"") {
        return status;
    }
    let code = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("code").and_then(serde_json::Value::as_u64));
    match code {
        Some(c) if (400..600).contains(&c) => c as u16,
        _ => 500,
    }
}

/// `auth_*` query parameters plus `auth_signature` for a request (Pusher API signing).
pub fn sign_query(
    key: &str,
    secret: &str,
    method: &str,
    path: &str,
    body: &[u8],
    ts: u64,
) -> String {
    let mut q = format!("auth_key={key}&auth_timestamp={ts}&auth_version=1.0");
    if !body.is_empty() {
        q.push_str("&body_md5=");
        q.push_str(&hex::encode(Md5::digest(body)));
    }
    let sig = hmac_hex(secret, &format!("{method}\n{path}\n{q}"));
    format!("{q}&auth_signature={sig}")
}

pub struct HttpConn {
    stream: Stream,
    buf: Vec<u8>,
    req: Vec<u8>,
    /// The server announced it closes this connection: open a new one.
    pub closed: bool,
    /// Body of the last response.
    pub body: Vec<u8>,
}

const MAX_HEAD: usize = 64 * 1024;
const MAX_BODY: usize = 16 * 1024 * 1024;
const REQ_TIMEOUT: Duration = Duration::from_secs(10);

fn bad(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_string())
}

impl HttpConn {
    /// Write `self.req`, read one response; returns the status. After an error, or when
    /// `closed` is set, the connection must not be reused.
    async fn roundtrip(&mut self) -> io::Result<u16> {
        match tokio::time::timeout(REQ_TIMEOUT, self.roundtrip_inner()).await {
            Ok(r) => r,
            Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "request timed out")),
        }
    }

    async fn roundtrip_inner(&mut self) -> io::Result<u16> {
        self.stream.write_all(&self.req).await?;
        self.buf.clear();
        self.body.clear();
        // Head.
        let head_end = loop {
            if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            if self.buf.len() > MAX_HEAD {
                return Err(bad("response head too large"));
            }
            self.fill().await?;
        };
        let head = std::str::from_utf8(&self.buf[..head_end]).map_err(|_| bad("bad head"))?;
        let mut lines = head.split("\r\n");
        let status_line = lines.next().ok_or_else(|| bad("no status line"))?;
        let status: u16 = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad("bad status line"))?;
        let mut content_length: Option<usize> = None;
        let mut chunked = false;
        let mut close = status_line.starts_with("HTTP/1.0");
        for l in lines {
            let Some((name, value)) = l.split_once(':') else {
                continue;
            };
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                content_length = Some(value.parse().map_err(|_| bad("bad content-length"))?);
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = value.to_ascii_lowercase().contains("chunked");
            } else if name.eq_ignore_ascii_case("connection") {
                let v = value.to_ascii_lowercase();
                if v.contains("close") {
                    close = true;
                } else if v.contains("keep-alive") {
                    close = false;
                }
            }
        }
        // Body (discarded).
        if chunked {
            let mut pos = head_end;
            loop {
                let line_end = loop {
                    if let Some(i) = self.buf[pos..].windows(2).position(|w| w == b"\r\n") {
                        break pos + i;
                    }
                    if self.buf.len() - pos > MAX_HEAD {
                        return Err(bad("bad chunk"));
                    }
                    self.fill().await?;
                };
                let size_s = std::str::from_utf8(&self.buf[pos..line_end])
                    .map_err(|_| bad("bad chunk size"))?;
                let size_s = size_s.split(';').next().unwrap_or("").trim();
                let size = usize::from_str_radix(size_s, 16).map_err(|_| bad("bad chunk size"))?;
                if size > MAX_BODY {
                    return Err(bad("chunk too large"));
                }
                pos = line_end + 2;
                if size == 0 {
                    // Trailers (normally none) end with an empty line.
                    loop {
                        if let Some(i) = self.buf[pos..].windows(2).position(|w| w == b"\r\n") {
                            let empty = i == 0;
                            pos += i + 2;
                            if empty {
                                break;
                            }
                            continue;
                        }
                        if self.buf.len() - pos > MAX_HEAD {
                            return Err(bad("bad trailers"));
                        }
                        self.fill().await?;
                    }
                    break;
                }
                while self.buf.len() < pos + size + 2 {
                    self.fill().await?;
                }
                self.body.extend_from_slice(&self.buf[pos..pos + size]);
                pos += size + 2;
            }
        } else if let Some(n) = content_length {
            if n > MAX_BODY {
                return Err(bad("body too large"));
            }
            while self.buf.len() < head_end + n {
                self.fill().await?;
            }
            self.body
                .extend_from_slice(&self.buf[head_end..head_end + n]);
        } else if !(status == 204 || status == 304 || (100..200).contains(&status)) {
            // Body delimited by the end of the connection.
            close = true;
        }
        if close {
            // The caller opens a new connection for the next request.
            self.closed = true;
        }
        Ok(status)
    }

    async fn fill(&mut self) -> io::Result<()> {
        let mut tmp = [0u8; 8192];
        let n = self.stream.read(&mut tmp).await?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed",
            ));
        }
        self.buf.extend_from_slice(&tmp[..n]);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_bodies_with_200() {
        assert_eq!(effective_status(200, b"{}"), 200);
        assert_eq!(
            effective_status(
                200,
                br#"{"error":"The secret authentication failed","code":401}"#
            ),
            401
        );
        assert_eq!(effective_status(200, br#"{"error":"x"}"#), 500);
        assert_eq!(effective_status(413, b"too large"), 413);
    }

    #[test]
    fn api_signature_vector() {
        let body = br#"{"name":"foo","channels":["project-3"],"data":"{\"some\":\"data\"}"}"#;
        let q = sign_query(
            "278d425bdf160c739803",
            "7ad3773142a6692b25b8",
            "POST",
            "/apps/3/events",
            body,
            1353088179,
        );
        assert!(q.contains("body_md5=ec365a775a4cd0599faeb73354201b6f"));
        assert!(q.ends_with(
            "auth_signature=da454824c97ba181a32ccc17a72625ba02771f50b50e1e7430e47a1f3f457e6c"
        ));
    }
}
