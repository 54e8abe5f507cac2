//! The WebSocket seam: the HTTP upgrade handshake (RFC 6455 §4.2) on top of
//! hyper, and the stream type every front-end uses.
//!
//! Two connection types live behind it:
//!
//! - [`lean::LeanSocket`], our own RFC 6455 connection on the raw
//!   `TcpStream`, used by the Pusher front-end: no buffers while idle, one
//!   `write` per outbox batch (see [`lean`]).
//! - [`Socket`], `tokio-websockets` on hyper's `Upgraded`, for anything
//!   that needs a full-featured crate. Only this module names that crate.

use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio_websockets::{CloseCode, Limits, Message, WebSocketStream};

use crate::core::connection::Frame;
pub mod lean;
mod lean_io;
pub mod outbox;

pub use lean::LeanSocket;

pub use tokio_websockets::Error as WsError;
pub use tokio_websockets::Message as WsMessage;

/// An upgraded WebSocket connection (server side).
pub type Socket = WebSocketStream<TokioIo<Upgraded>>;

const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// The `Sec-WebSocket-Accept` value for a client's key.
pub fn accept_key(key: &[u8]) -> String {
    let mut sha = sha1_smol::Sha1::new();
    sha.update(key);
    sha.update(GUID.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(sha.digest().bytes())
}

fn header_has_token(req: &Request<Incoming>, name: header::HeaderName, token: &str) -> bool {
    req.headers().get_all(name).iter().any(|v| {
        v.to_str()
            .is_ok_and(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    })
}

/// Whether the request asks for a WebSocket upgrade.
pub fn is_upgrade(req: &Request<Incoming>) -> bool {
    header_has_token(req, header::UPGRADE, "websocket")
}

/// A pending upgrade: send `response`, then await `upgrade`.
pub struct Handshake {
    pub response: Response<Full<Bytes>>,
    pub upgrade: OnUpgrade,
}

/// Validates the handshake and prepares the 101 response. `protocol` is the
/// subprotocol to select, when the handler negotiated one. Errors are a
/// ready-made 400/426 response.
pub fn handshake(
    req: &mut Request<Incoming>,
    protocol: Option<&str>,
) -> Result<Handshake, Box<Response<Full<Bytes>>>> {
    let bad = |status: StatusCode, msg: &'static str| {
        let mut r = Response::new(Full::new(Bytes::from_static(msg.as_bytes())));
        *r.status_mut() = status;
        if status == StatusCode::UPGRADE_REQUIRED {
            r.headers_mut().insert(
                header::SEC_WEBSOCKET_VERSION,
                HeaderValue::from_static("13"),
            );
        }
        r
    };
    if req.method() != hyper::Method::GET {
        return Err(Box::new(bad(
            StatusCode::BAD_REQUEST,
            "WebSocket upgrades must use GET\n",
        )));
    }
    if !header_has_token(req, header::CONNECTION, "upgrade") {
        return Err(Box::new(bad(
            StatusCode::BAD_REQUEST,
            "missing Connection: upgrade\n",
        )));
    }
    if req
        .headers()
        .get(header::SEC_WEBSOCKET_VERSION)
        .map(|v| v.as_bytes())
        != Some(b"13")
    {
        return Err(Box::new(bad(
            StatusCode::UPGRADE_REQUIRED,
            "only WebSocket version 13 is supported\n",
        )));
    }
    let Some(key) = req.headers().get(header::SEC_WEBSOCKET_KEY) else {
        return Err(Box::new(bad(
            StatusCode::BAD_REQUEST,
            "missing Sec-WebSocket-Key\n",
        )));
    };
    let accept = accept_key(key.as_bytes());
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = response.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    // The accept value is base64, always a valid header value.
    if let Ok(v) = HeaderValue::from_str(&accept) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    if let Some(p) = protocol.and_then(|p| HeaderValue::from_str(p).ok()) {
        h.insert(header::SEC_WEBSOCKET_PROTOCOL, p);
    }
    let upgrade = hyper::upgrade::on(req);
    Ok(Handshake { response, upgrade })
}

/// Queues frames (text, or binary where flagged) and writes them in as few
/// syscalls as the crate allows, giving up after `timeout` (a peer that
/// does not read).
pub async fn send_batch<F: Into<Frame>>(
    ws: &mut Socket,
    frames: impl IntoIterator<Item = F>,
    timeout: Duration,
) -> Result<(), ()> {
    let write = async {
        for frame in frames {
            let frame = frame.into();
            let message = if frame.binary {
                Message::binary(frame.data)
            } else {
                Message::text(frame.data)
            };
            ws.feed(message).await?;
        }
        ws.flush().await
    };
    match tokio::time::timeout(timeout, write).await {
        Ok(Ok(())) => Ok(()),
        _ => Err(()),
    }
}

/// Like [`server`], and outgoing messages longer than `frame_size` bytes
/// (4 MiB when `None`) are sent as fragmented messages of frames that size.
pub fn server_with(upgraded: Upgraded, max_message: usize, frame_size: Option<usize>) -> Socket {
    let mut config = tokio_websockets::Config::default();
    if let Some(size) = frame_size {
        config = config.frame_size(size.max(1));
    }
    tokio_websockets::ServerBuilder::new()
        .limits(Limits::default().max_payload_len(Some(max_message)))
        .config(config)
        .serve(TokioIo::new(upgraded))
}

/// Sends a close frame with `code` and `reason` and waits (bounded) for the
/// peer's answer so the close handshake completes.
pub async fn close(ws: &mut Socket, code: u16, reason: &str, timeout: Duration) {
    let code = CloseCode::try_from(code).unwrap_or(CloseCode::NORMAL_CLOSURE);
    let _ = tokio::time::timeout(timeout, async {
        if ws.send(Message::close(Some(code), reason)).await.is_ok() {
            while let Some(Ok(_)) = ws.next().await {}
        }
    })
    .await;
}

/// After the crate reported a protocol error it has queued the matching
/// close frame; polling once more flushes it.
async fn finish_after_error(ws: &mut Socket, timeout: Duration) {
    let _ = tokio::time::timeout(timeout, ws.next()).await;
}

/// Ends a connection after the crate reported `error`: makes sure the right
/// close frame (1002, 1007, 1009 ...) reaches the peer. Over the size limit
/// across fragments, the crate reports the error without queuing a close
/// frame, so 1009 is sent here (when it did queue one, this send is refused
/// and the flush sends the crate's). Then it lingers so the frame is read
/// before the socket closes.
pub async fn close_after_error(ws: &mut Socket, error: &WsError, timeout: Duration) {
    if matches!(error, WsError::PayloadTooLong { .. }) {
        close(ws, 1009, "message too big", timeout).await;
    }
    finish_after_error(ws, timeout).await;
    if !matches!(error, WsError::Io(_)) {
        linger(ws, timeout).await;
    }
}

/// After a close caused by a protocol error: sends FIN, then reads and
/// discards what the peer still sends (bounded by `timeout`). Closing a
/// socket with unread input makes the kernel answer with a reset, which can
/// destroy the close frame before the peer reads it; lingering lets it
/// arrive.
pub async fn linger(ws: &mut Socket, timeout: Duration) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let io = ws.get_mut();
    let _ = tokio::time::timeout(timeout, async {
        let _ = io.shutdown().await;
        let mut sink = [0u8; 4096];
        while let Ok(n) = io.read(&mut sink).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    #[test]
    fn rfc6455_accept_example() {
        assert_eq!(
            super::accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }
}
