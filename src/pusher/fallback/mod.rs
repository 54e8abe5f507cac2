//! pusher-js's HTTP fallback transports, `xhr_streaming` and
//! `xhr_polling`, at `{http_fallback_path}/app/{key}/{server}/{session}/…`
//! (pusher-js's `httpHost` / `httpPort` / `httpPath`, default `/pusher`).
//!
//! A session is created by its first receive request
//! (`…/xhr_streaming` or `…/xhr`) and runs the ordinary Pusher session over
//! an HTTP transport (`session`); `…/xhr_send` carries the client's
//! messages. The framing is in [`wire`].
//!
//! No sticky sessions: a request for a session this node does not hold is
//! offered to the other nodes through the cluster ([`relay`]); the owner
//! answers (a send is handled there, a receive's chunks flow back through
//! this node). Only when no node claims it does this node create it.
//!
//! The session path (a random server number and 8 base-32 characters,
//! about 50 bits, chosen by pusher-js) is the session's bearer secret, as
//! in SockJS: whoever knows it can read and write the session, so it must
//! not be logged by proxies in front of us.

pub mod relay;
pub(crate) mod session;
pub mod wire;

use std::collections::HashMap;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Either, Full, Limited};
use hyper::body::{Frame, Incoming};
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use parking_lot::Mutex;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::ServerConfig;
use crate::core::hub::Hub;
use crate::core::node::Node;
use crate::pusher::protocol as pusher_wire;
use session::{Op, RESPONSE_CHUNKS};

/// Operations a session may have waiting (sends and receives); more are
/// refused with 503.
const OPS_QUEUED: usize = 64;

/// A response body: a whole one, or the chunks of a receive request.
pub type Body = Either<Full<Bytes>, ChunkBody>;

/// The body of a receive response: chunks as the session writes them; the
/// response ends when the session drops its sender.
pub struct ChunkBody {
    rx: mpsc::Receiver<Bytes>,
}

impl hyper::body::Body for ChunkBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.rx.poll_recv(cx).map(|c| c.map(|b| Ok(Frame::data(b))))
    }
}

/// What a request asks of a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Streaming,
    Polling,
    Send,
}

/// A parsed session URL.
#[derive(Debug, PartialEq, Eq)]
pub struct SessionPath<'a> {
    pub key: &'a str,
    /// `{key}/{server}/{session}`: unique per app.
    pub id: &'a str,
    pub kind: Kind,
}

/// Parses `/app/{key}/{server}/{session}/{xhr_streaming|xhr|xhr_send}`
/// (the part after the configured prefix).
pub fn parse_path(rest: &str) -> Option<SessionPath<'_>> {
    let rest = rest.strip_prefix("/app/")?;
    let (id, kind) = rest.rsplit_once('/')?;
    let kind = match kind {
        "xhr_streaming" => Kind::Streaming,
        "xhr" => Kind::Polling,
        "xhr_send" => Kind::Send,
        _ => return None,
    };
    let mut parts = id.split('/');
    let (key, server, session) = (parts.next()?, parts.next()?, parts.next()?);
    let token = |s: &str, max: usize| {
        !s.is_empty()
            && s.len() <= max
            && s.bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-')
    };
    if parts.next().is_some() || !token(key, 128) || !token(server, 8) || !token(session, 64) {
        return None;
    }
    Some(SessionPath { key, id, kind })
}

/// The HTTP fallback front-end of one node: its sessions and its link to
/// the other nodes.
pub struct Fallback {
    node: Arc<Node>,
    config: Arc<ServerConfig>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
    sessions: Mutex<HashMap<Box<str>, mpsc::Sender<Op>>>,
    relay: Option<Arc<relay::Relay>>,
}

impl Fallback {
    /// `tasks` tracks the session tasks (awaited at shutdown); `relay`
    /// links the nodes of a cluster.
    pub fn new(
        node: Arc<Node>,
        config: Arc<ServerConfig>,
        shutdown: CancellationToken,
        tasks: TaskTracker,
        link: Option<Arc<dyn crate::core::relay::Link>>,
    ) -> Arc<Fallback> {
        Arc::new_cyclic(|me| Fallback {
            relay: link.map(|link| relay::Relay::start(link, me.clone(), &node)),
            node,
            config,
            shutdown,
            tasks,
            sessions: Mutex::new(HashMap::new()),
        })
    }

    /// The configured path prefix, when the fallback is on.
    pub fn prefix(&self) -> &str {
        &self.config.http_fallback_path
    }

    /// Whether `path` belongs to the fallback transports.
    pub fn matches(&self, path: &str) -> bool {
        let prefix = self.prefix();
        !prefix.is_empty()
            && path
                .strip_prefix(prefix)
                .is_some_and(|rest| rest.starts_with("/app/"))
    }

    /// Number of sessions this node holds.
    pub fn session_count(&self) -> usize {
        self.sessions.lock().len()
    }

    /// Serves one request under [`Fallback::prefix`].
    pub async fn handle(self: &Arc<Self>, req: Request<Incoming>, ready: bool) -> Response<Body> {
        let path = req.uri().path().to_owned();
        let rest = path.strip_prefix(self.prefix()).unwrap_or("");
        let Some(target) = parse_path(rest) else {
            return error(
                StatusCode::NOT_FOUND,
                "not a session URL: expected /app/{key}/{server}/{session}/xhr_streaming|xhr|xhr_send",
            );
        };
        let Some(hub) = self.node.by_key(target.key) else {
            return error(
                StatusCode::NOT_FOUND,
                "application does not exist: check the app key",
            );
        };
        if !hub.app.enabled {
            return error(StatusCode::FORBIDDEN, "application is disabled");
        }
        let origin = req
            .headers()
            .get(header::ORIGIN)
            .and_then(|o| o.to_str().ok())
            .map(str::to_owned);
        if !hub.app.origin_allowed(origin.as_deref()) {
            hub.stats.error("origin_refused");
            return error(
                StatusCode::FORBIDDEN,
                &format!(
                    "origin {:?} is not allowed for this app",
                    origin.unwrap_or_default()
                ),
            );
        }
        let mut response = match *req.method() {
            Method::OPTIONS => preflight(req.headers()),
            Method::POST => match target.kind {
                Kind::Send => self.send(&hub, target.id, req).await,
                kind => self.receive(&hub, target.id, kind, &req, ready).await,
            },
            _ => error(
                StatusCode::METHOD_NOT_ALLOWED,
                "the HTTP fallback transports take POST requests",
            ),
        };
        if let Some(origin) = origin.and_then(|o| HeaderValue::from_str(&o).ok()) {
            let h = response.headers_mut();
            h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
            h.insert(
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
            h.insert(header::VARY, HeaderValue::from_static("Origin"));
        }
        response
    }

    /// `xhr_send`: a JSON array of Pusher messages for the session.
    async fn send(&self, hub: &Arc<Hub>, id: &str, req: Request<Incoming>) -> Response<Body> {
        // A batch of messages, each at most max_message_bytes, JSON-escaped.
        let limit = self.config.max_message_bytes.saturating_mul(2);
        // A body trickling in must not hold the connection for long.
        let read = Duration::from_secs(self.config.handshake_timeout);
        let collected = tokio::time::timeout(read, Limited::new(req.into_body(), limit).collect());
        let body = match collected.await {
            Err(_) => return error(StatusCode::REQUEST_TIMEOUT, "request body too slow"),
            Ok(Ok(collected)) => collected.to_bytes(),
            Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
                hub.stats.error("fallback_body_too_large");
                return error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    &format!("xhr_send body over {limit} bytes"),
                );
            }
            Ok(Err(_)) => return error(StatusCode::BAD_REQUEST, "could not read the request body"),
        };
        let messages = match wire::parse_send(&body) {
            Ok(m) => m,
            Err(message) => {
                hub.stats.error("bad_json");
                return error(StatusCode::BAD_REQUEST, &message);
            }
        };
        if let Some(too_big) = messages
            .iter()
            .find(|m| m.len() > self.config.max_message_bytes)
        {
            hub.stats.error("message_too_large");
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!(
                    "a message of {} bytes is over the limit of {}",
                    too_big.len(),
                    self.config.max_message_bytes
                ),
            );
        }
        match self.offer(id, Op::Send(messages)) {
            Offered::Taken => return no_content(),
            Offered::Busy => return busy(),
            Offered::Unknown(Op::Send(messages)) => {
                if let Some(relay) = &self.relay
                    && let Some(answer) = relay.forward_send(hub, id, messages).await
                {
                    return answer;
                }
            }
            Offered::Unknown(_) => {}
        }
        error(
            StatusCode::NOT_FOUND,
            "no such session (it expired or the server restarted); reconnect",
        )
    }

    /// A receive request: to the session's owner, or a new session.
    async fn receive(
        self: &Arc<Self>,
        hub: &Arc<Hub>,
        id: &str,
        kind: Kind,
        req: &Request<Incoming>,
        ready: bool,
    ) -> Response<Body> {
        let streaming = kind == Kind::Streaming;
        let (tx, rx) = mpsc::channel(RESPONSE_CHUNKS);
        let tx = match self.offer(id, Op::Receive { streaming, tx }) {
            Offered::Taken => return chunked(rx),
            Offered::Busy => return busy(),
            Offered::Unknown(Op::Receive { tx, .. }) => tx,
            Offered::Unknown(Op::Send(_)) => return unreachable_op(),
        };
        if let Some(relay) = &self.relay
            && let Some(answer) = relay.forward_receive(hub, id, streaming).await
        {
            return answer;
        }
        // Nobody holds it: a new session here.
        let refusal = if !ready {
            Some((4200, "server is shutting down; reconnect".to_string()))
        } else {
            None
        };
        let slot = match refusal {
            Some(r) => Err(r),
            None => hub.try_connect().ok_or_else(|| {
                hub.stats.error("over_connection_quota");
                (4004, "application is over its connection quota".to_string())
            }),
        };
        let slot = match slot {
            Ok(slot) => slot,
            Err((code, message)) => return refused(code, &message),
        };
        let cookie: Option<Arc<str>> = req
            .headers()
            .get(header::COOKIE)
            .and_then(|c| c.to_str().ok())
            .map(Into::into);
        let (ops_tx, ops_rx) = mpsc::channel(OPS_QUEUED);
        let first = Op::Receive { streaming, tx };
        if ops_tx.try_send(first).is_err() {
            return busy();
        }
        {
            let mut sessions = self.sessions.lock();
            if sessions.contains_key(id) {
                // Created by a concurrent request meanwhile.
                return error(StatusCode::CONFLICT, "session is being created; retry");
            }
            sessions.insert(id.into(), ops_tx.clone());
        }
        let me = self.clone();
        let (node, hub, config) = (self.node.clone(), hub.clone(), self.config.clone());
        let shutdown = self.shutdown.clone();
        let id: Box<str> = id.into();
        self.tasks.spawn(async move {
            let _slot = slot;
            session::run(ops_rx, node, hub, config, shutdown, cookie).await;
            let mut sessions = me.sessions.lock();
            if sessions.get(&id).is_some_and(|s| s.same_channel(&ops_tx)) {
                sessions.remove(&id);
            }
        });
        chunked(rx)
    }

    /// Hands `op` to a session of this node.
    fn offer(&self, id: &str, op: Op) -> Offered {
        let sender = self.sessions.lock().get(id).cloned();
        let Some(sender) = sender else {
            return Offered::Unknown(op);
        };
        match sender.try_send(op) {
            Ok(()) => Offered::Taken,
            Err(mpsc::error::TrySendError::Full(_)) => Offered::Busy,
            Err(mpsc::error::TrySendError::Closed(op)) => Offered::Unknown(op),
        }
    }

    /// Whether this node holds session `id` (asked by other nodes).
    pub(crate) fn holds(&self, id: &str) -> bool {
        self.sessions.lock().contains_key(id)
    }
}

enum Offered {
    Taken,
    Busy,
    Unknown(Op),
}

fn unreachable_op() -> Response<Body> {
    error(StatusCode::INTERNAL_SERVER_ERROR, "unexpected operation")
}

fn whole(status: StatusCode, content_type: &'static str, body: Bytes) -> Response<Body> {
    let mut r = Response::new(Either::Left(Full::new(body)));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

pub(crate) fn error(status: StatusCode, message: &str) -> Response<Body> {
    whole(
        status,
        "application/json",
        serde_json::json!({ "error": message }).to_string().into(),
    )
}

pub(crate) fn no_content() -> Response<Body> {
    whole(StatusCode::NO_CONTENT, "text/plain", Bytes::new())
}

pub(crate) fn busy() -> Response<Body> {
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "too many requests queued for this session; slow down",
    )
}

/// A receive response streaming the session's chunks. `X-Accel-Buffering:
/// no` keeps nginx from buffering it.
pub(crate) fn chunked(rx: mpsc::Receiver<Bytes>) -> Response<Body> {
    let mut r = Response::new(Either::Right(ChunkBody { rx }));
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/javascript; charset=UTF-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    r
}

/// A refused session, told the way pusher-js understands: open, the
/// `pusher:error`, then the close code.
fn refused(code: u16, message: &str) -> Response<Body> {
    let mut out = bytes::BytesMut::new();
    out.extend_from_slice(wire::OPEN);
    let error = pusher_wire::error(Some(code), message);
    wire::push_array(&mut out, [&error[..]]);
    wire::push_close(&mut out, code, message);
    whole(
        StatusCode::OK,
        "application/javascript; charset=UTF-8",
        out.freeze(),
    )
}

/// Answers a CORS preflight (pusher-js's `Content-Type: application/json`
/// makes every cross-origin request preflighted).
fn preflight(headers: &HeaderMap) -> Response<Body> {
    let mut r = whole(StatusCode::NO_CONTENT, "text/plain", Bytes::new());
    let h = r.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("POST, OPTIONS"),
    );
    let asked = headers
        .get(header::ACCESS_CONTROL_REQUEST_HEADERS)
        .filter(|v| v.len() <= 256)
        .cloned()
        .unwrap_or_else(|| HeaderValue::from_static("Content-Type"));
    h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, asked);
    h.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("86400"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_paths() {
        assert_eq!(
            parse_path("/app/key/123/abcdefgh/xhr_streaming"),
            Some(SessionPath {
                key: "key",
                id: "key/123/abcdefgh",
                kind: Kind::Streaming
            })
        );
        assert_eq!(
            parse_path("/app/k/1/s/xhr").map(|p| p.kind),
            Some(Kind::Polling)
        );
        assert_eq!(
            parse_path("/app/k/1/s/xhr_send").map(|p| p.kind),
            Some(Kind::Send)
        );
        for bad in [
            "/app/k/1/s/other",
            "/app/k/1/xhr",
            "/app/k/1/s/t/xhr",
            "/app/k/1/s.x/xhr",
            "/app//1/s/xhr",
            "/app/k/123456789/s/xhr",
            "/apps/k/1/s/xhr",
        ] {
            assert_eq!(parse_path(bad), None, "{bad}");
        }
    }
}
