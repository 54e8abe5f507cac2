//! The handler contract, as one connection lives it.
//!
//! - **connect** — before the 101: `POST {"event":"connect","socket_id",
//!   "path","params","query","headers":{"origin","user-agent"}}`. A 2xx
//!   accepts; its optional JSON body may hold `"user_id"`, `"rooms"` and
//!   `"actions"`. Any other status refuses the upgrade with that status;
//!   no answer within `timeout` refuses with 504, an unreachable app (or a
//!   2xx that is not JSON) with 502.
//! - **message** — each message, one at a time per connection and in order
//!   (the connection is not read while its message is with the app), many
//!   connections in parallel (bounded by [`crate::app_call::MAX_IN_FLIGHT`]).
//! - **close** — once per accepted connection, whoever closed it (the
//!   client, an action, the server's shutdown); its answer is ignored.
//!
//! Every call carries the browser's `Cookie` and `Authorization` headers
//! from the handshake, `X-Forwarded-For`, `X-Resonance-Event` and
//! `X-Resonance-Signature` (see [`crate::app_call`]).

use std::net::IpAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use hyper::header::{self, HeaderName, HeaderValue};
use hyper::{StatusCode, Uri};
use parking_lot::Mutex;
use serde_json::{Map, Value, json};

use super::actions::{self, Action};
use super::config::{RouteConfig, expand};
use super::sockets::AppSockets;
use crate::app_call::{self, Call, Outcome};
use crate::core::connection::SocketId;
use crate::custom::auth::UpgradeRequest;
use crate::custom::conn::{Conn, Message};
use crate::custom::handler::{ABNORMAL, Handler, WebSocket};
use crate::custom::rooms::joinable;

/// The client's address, put in the request's extensions by the server
/// (for `X-Forwarded-For`).
#[derive(Debug, Clone, Copy)]
pub struct PeerAddr(pub IpAddr);

/// The most a close call may take: the connection's task is given 10 s
/// after its socket ended.
const MAX_CLOSE_WAIT: Duration = Duration::from_secs(8);

/// One `[[routes]]` entry at run time.
pub(crate) struct HandlerRoute {
    cfg: RouteConfig,
    url: Uri,
    timeout: Duration,
    sockets: OnceLock<Arc<AppSockets>>,
}

/// What the app's connect answer gave the connection.
pub(crate) struct Accepted {
    socket_id: SocketId,
    user: Option<String>,
    rooms: Vec<String>,
    actions: Vec<Action>,
    headers: Vec<(HeaderName, HeaderValue)>,
    request: Arc<RequestInfo>,
}

/// The parts of the upgrade request every call repeats.
struct RequestInfo {
    path: String,
    params: Value,
}

/// A refused upgrade: the status and a message for the body.
pub(crate) type Refused = (StatusCode, String);

impl HandlerRoute {
    pub(crate) fn new(cfg: RouteConfig) -> Result<Self, String> {
        let url = app_call::parse_url(&cfg.handler).map_err(|e| format!("handler {e}"))?;
        Ok(HandlerRoute {
            timeout: Duration::from_secs(cfg.timeout.max(1)),
            url,
            cfg,
            sockets: OnceLock::new(),
        })
    }

    /// Connects the route to its app's socket registry (once, by the mount).
    pub(crate) fn bind(&self, sockets: Arc<AppSockets>) {
        let _ = self.sockets.set(sockets);
    }

    fn sockets(&self) -> Option<&Arc<AppSockets>> {
        self.sockets.get()
    }

    fn path(&self) -> &str {
        &self.cfg.path
    }

    fn count(&self, kind: &'static str) {
        if let Some(s) = self.sockets() {
            s.hub().stats.error(kind);
        }
    }

    /// The connect step, before the 101: the route's rooms, then the app's
    /// verdict.
    pub(crate) async fn connect(
        &self,
        request: &UpgradeRequest,
        peer: Option<IpAddr>,
    ) -> Result<Accepted, Refused> {
        let mut rooms = Vec::with_capacity(self.cfg.rooms.len());
        for template in &self.cfg.rooms {
            let room = expand(template, &request.params);
            // The client picked the parameter: only public names.
            if let Err(e) = joinable(&room, None, None) {
                self.count("room_refused");
                return Err((StatusCode::FORBIDDEN, e.to_string()));
            }
            rooms.push(room);
        }
        let socket_id = SocketId::generate();
        let params: Map<String, Value> = request
            .params
            .iter()
            .map(|(k, v)| (k.to_string(), Value::from(v)))
            .collect();
        let info = Arc::new(RequestInfo {
            path: request.path.clone(),
            params: Value::Object(params),
        });
        let headers = forwarded_headers(request, peer);
        let mut accepted = Accepted {
            socket_id,
            user: None,
            rooms,
            actions: Vec::new(),
            headers,
            request: info,
        };
        if !self.cfg.posts("connect") {
            return Ok(accepted);
        }
        let mut query = Map::new();
        for pair in request.query.as_deref().unwrap_or("").split('&') {
            if pair.is_empty() {
                continue;
            }
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let decode = |s: &str| {
                percent_encoding::percent_decode_str(&s.replace('+', " "))
                    .decode_utf8_lossy()
                    .into_owned()
            };
            query.insert(decode(k), Value::from(decode(v)));
        }
        let mut seen = Map::new();
        for name in ["origin", "user-agent"] {
            if let Some(v) = request.header(name) {
                seen.insert(name.into(), Value::from(v));
            }
        }
        let body = json!({
            "event": "connect",
            "socket_id": accepted.socket_id.as_str(),
            "path": accepted.request.path,
            "params": accepted.request.params,
            "query": query,
            "headers": seen,
        });
        let outcome = self
            .call("connect", &body, &accepted.headers, self.timeout)
            .await;
        let answer = match outcome {
            Outcome::Answered { status, body } if (200..300).contains(&status) => body,
            Outcome::Answered { status, .. } => {
                self.count("handler_refused");
                let status = StatusCode::from_u16(status)
                    .ok()
                    .filter(|s| !s.is_informational() && !s.is_success())
                    .unwrap_or(StatusCode::BAD_GATEWAY);
                return Err((status, "connection refused by the application".into()));
            }
            Outcome::TimedOut => {
                self.log_failure("connect", "no answer within the timeout", "handler_timeout");
                return Err((
                    StatusCode::GATEWAY_TIMEOUT,
                    "the application did not answer in time".into(),
                ));
            }
            Outcome::Failed(e) => {
                self.log_failure("connect", &e, "handler_unreachable");
                return Err((
                    StatusCode::BAD_GATEWAY,
                    "the application is unreachable".into(),
                ));
            }
        };
        let value = match parse_answer(&answer) {
            Ok(v) => v,
            Err(e) => {
                self.log_failure("connect", &e, "handler_bad_answer");
                return Err((
                    StatusCode::BAD_GATEWAY,
                    "the application's answer was not understood".into(),
                ));
            }
        };
        match value.get("user_id") {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) if !s.is_empty() => accepted.user = Some(s.clone()),
            Some(Value::Number(n)) => accepted.user = Some(n.to_string()),
            Some(other) => {
                self.log_failure(
                    "connect",
                    &format!("user_id {other} is not a non-empty string or a number"),
                    "handler_bad_answer",
                );
                return Err((
                    StatusCode::BAD_GATEWAY,
                    "the application's answer was not understood".into(),
                ));
            }
        }
        match value.get("rooms") {
            None | Some(Value::Null) => {}
            Some(Value::Array(rooms)) => {
                for room in rooms {
                    match room.as_str() {
                        Some(r) => accepted.rooms.push(r.to_string()),
                        None => self.log_failure(
                            "connect",
                            &format!("room {room} is not a string"),
                            "handler_bad_answer",
                        ),
                    }
                }
            }
            Some(_) => {
                self.log_failure("connect", "\"rooms\" is not an array", "handler_bad_answer")
            }
        }
        let (parsed, errors) = Action::parse_list(value.get("actions"));
        for e in errors {
            self.log_failure("connect", &e, "handler_bad_action");
        }
        accepted.actions = parsed;
        Ok(accepted)
    }

    fn log_failure(&self, event: &str, error: &str, kind: &'static str) {
        tracing::warn!(route = self.path(), handler = %self.url, event, error, "handler call failed");
        self.count(kind);
    }

    async fn call(
        &self,
        event: &'static str,
        body: &Value,
        headers: &[(HeaderName, HeaderValue)],
        timeout: Duration,
    ) -> Outcome {
        let Some(sockets) = self.sockets() else {
            return Outcome::Failed("route is not mounted".into());
        };
        app_call::post(Call {
            url: &self.url,
            secret: &sockets.hub().app.secret,
            event,
            body: Bytes::from(body.to_string()),
            headers: headers.to_vec(),
            timeout,
        })
        .await
    }

    /// The per-connection handler task for an accepted connection.
    pub(crate) fn handler_for(self: &Arc<Self>, accepted: Accepted) -> Handler {
        let route = self.clone();
        let accepted = Mutex::new(Some(accepted));
        Handler::from_task(move |ws| {
            let route = route.clone();
            let accepted = accepted.lock().take();
            async move {
                if let Some(accepted) = accepted {
                    route.run(accepted, ws).await;
                }
            }
        })
    }

    /// One connection's life after the 101.
    async fn run(self: Arc<Self>, mut accepted: Accepted, mut ws: WebSocket) {
        let Some(sockets) = self.sockets().cloned() else {
            return;
        };
        let conn = ws.conn().clone();
        sockets.insert(&conn);
        for room in &accepted.rooms {
            if let Err(e) = conn.join(room) {
                self.log_failure(
                    "connect",
                    &format!("room {room:?}: {e}"),
                    "handler_bad_action",
                );
            }
        }
        actions::run(
            &sockets,
            &conn,
            self.path(),
            std::mem::take(&mut accepted.actions),
        );
        let user = accepted
            .user
            .as_deref()
            .map(Value::from)
            .unwrap_or(Value::Null);
        let posts_messages = self.cfg.posts("message");
        while let Some(message) = ws.recv().await {
            if posts_messages {
                self.message(&sockets, &conn, &accepted, &user, message)
                    .await;
            }
        }
        sockets.remove(conn.id());
        if self.cfg.posts("close") {
            let status = conn.close_status();
            let (code, reason) = status.map_or((ABNORMAL, String::new()), |s| (s.code, s.reason));
            let body = json!({
                "event": "close",
                "socket_id": conn.id().as_str(),
                "user_id": user,
                "path": accepted.request.path,
                "params": accepted.request.params,
                "code": code,
                "reason": reason,
            });
            let wait = self.timeout.min(MAX_CLOSE_WAIT);
            match self.call("close", &body, &accepted.headers, wait).await {
                Outcome::Answered { status, .. } if (200..300).contains(&status) => {}
                Outcome::Answered { status, .. } => {
                    self.log_failure("close", &format!("status {status}"), "handler_status")
                }
                Outcome::TimedOut => self.log_failure("close", "timed out", "handler_timeout"),
                Outcome::Failed(e) => self.log_failure("close", &e, "handler_unreachable"),
            }
        }
    }

    async fn message(
        &self,
        sockets: &AppSockets,
        conn: &Conn,
        accepted: &Accepted,
        user: &Value,
        message: Message,
    ) {
        let mut body = json!({
            "event": "message",
            "socket_id": conn.id().as_str(),
            "user_id": user,
            "path": accepted.request.path,
            "params": accepted.request.params,
        });
        if let Some(obj) = body.as_object_mut() {
            match message.as_text() {
                Some(text) => {
                    obj.insert("data".into(), Value::from(text));
                }
                None => {
                    let b64 = base64::engine::general_purpose::STANDARD.encode(message.as_bytes());
                    obj.insert("data".into(), Value::from(b64));
                    obj.insert("binary".into(), Value::Bool(true));
                }
            }
        }
        let answer = match self
            .call("message", &body, &accepted.headers, self.timeout)
            .await
        {
            Outcome::Answered { status, body } if (200..300).contains(&status) => body,
            Outcome::Answered { status, .. } => {
                return self.log_failure("message", &format!("status {status}"), "handler_status");
            }
            Outcome::TimedOut => {
                return self.log_failure(
                    "message",
                    "no answer within the timeout",
                    "handler_timeout",
                );
            }
            Outcome::Failed(e) => return self.log_failure("message", &e, "handler_unreachable"),
        };
        let value = match parse_answer(&answer) {
            Ok(v) => v,
            Err(e) => return self.log_failure("message", &e, "handler_bad_answer"),
        };
        let (parsed, errors) = Action::parse_list(value.get("actions"));
        for e in errors {
            self.log_failure("message", &e, "handler_bad_action");
        }
        actions::run(sockets, conn, self.path(), parsed);
    }
}

impl Accepted {
    pub(crate) fn socket_id(&self) -> &SocketId {
        &self.socket_id
    }

    pub(crate) fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }
}

/// An answer's body: empty (nothing to do) or a JSON object.
fn parse_answer(body: &[u8]) -> Result<Value, String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Object(Map::new()));
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(v @ Value::Object(_)) => Ok(v),
        Ok(_) => Err("the answer is JSON but not an object".into()),
        Err(e) => Err(format!("the answer is not JSON: {e}")),
    }
}

/// `Cookie`, `Authorization` and `X-Forwarded-For` for every call.
fn forwarded_headers(
    request: &UpgradeRequest,
    peer: Option<IpAddr>,
) -> Vec<(HeaderName, HeaderValue)> {
    let mut out = Vec::new();
    for name in [header::COOKIE, header::AUTHORIZATION] {
        for value in request.headers.get_all(&name) {
            out.push((name.clone(), value.clone()));
        }
    }
    let earlier = request.header("x-forwarded-for");
    let chain = match (earlier, peer) {
        (Some(e), Some(p)) => Some(format!("{e}, {p}")),
        (Some(e), None) => Some(e.to_string()),
        (None, Some(p)) => Some(p.to_string()),
        (None, None) => None,
    };
    if let Some(v) = chain.and_then(|c| HeaderValue::from_str(&c).ok()) {
        out.push((HeaderName::from_static("x-forwarded-for"), v));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers() {
        assert!(parse_answer(b"").unwrap().as_object().unwrap().is_empty());
        assert!(parse_answer(b"  \n").is_ok());
        assert!(parse_answer(br#"{"actions":[]}"#).is_ok());
        assert!(parse_answer(b"[1]").is_err());
        assert!(parse_answer(b"<html>").is_err());
    }
}
