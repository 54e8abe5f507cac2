//! Who opens a raw connection: decided from the upgrade request before the
//! server answers 101, so a refused client gets a plain HTTP status (which
//! a browser's `WebSocket` reports as a failed connection) and never holds
//! a socket.
//!
//! The [`Authenticator`] trait is the seam; [`from_fn`] adapts a closure
//! (a signed token in the query, a header set by a proxy) and
//! [`HttpAuthenticator`] asks the web app itself, forwarding the browser's
//! cookies — the usual way to reuse a session login.

use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{self, HeaderValue};
use hyper::{HeaderMap, Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::route::Params;

/// What an authenticator sees of the upgrade request.
#[derive(Debug, Clone)]
pub struct UpgradeRequest {
    pub path: String,
    pub query: Option<String>,
    pub headers: HeaderMap,
    /// Parameters captured by the route's pattern.
    pub params: Params,
}

impl UpgradeRequest {
    /// A header as text (`None` when absent or not visible ASCII).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// A query parameter, percent-decoded (`+` is not a space here).
    pub fn query_param(&self, name: &str) -> Option<String> {
        self.query.as_deref()?.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (k == name).then(|| {
                percent_encoding::percent_decode_str(v)
                    .decode_utf8_lossy()
                    .into_owned()
            })
        })
    }

    /// A cookie's value from the `Cookie` header(s).
    pub fn cookie(&self, name: &str) -> Option<&str> {
        self.headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .find_map(|pair| {
                let (k, v) = pair.trim().split_once('=')?;
                (k == name).then_some(v)
            })
    }
}

/// An authenticator's refusal: the HTTP status and a message for the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    pub message: String,
}

impl Refusal {
    /// 401: the request does not say who it is, or says it wrongly.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Refusal {
            status: 401,
            message: message.into(),
        }
    }

    /// 403: known, but not allowed here.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Refusal {
            status: 403,
            message: message.into(),
        }
    }
}

/// `Ok(Some(user))`: the connection belongs to `user` (its id, as the app
/// names users); `Ok(None)`: an anonymous connection is fine;
/// `Err(refusal)`: no upgrade.
pub type AuthResult = Result<Option<String>, Refusal>;

/// Decides who a raw connection belongs to.
pub trait Authenticator: Send + Sync + 'static {
    fn authenticate<'a>(&'a self, request: &'a UpgradeRequest) -> BoxFuture<'a, AuthResult>;
}

/// An authenticator from a synchronous closure.
pub fn from_fn<F>(f: F) -> FnAuthenticator<F>
where
    F: Fn(&UpgradeRequest) -> AuthResult + Send + Sync + 'static,
{
    FnAuthenticator(f)
}

/// See [`from_fn`].
pub struct FnAuthenticator<F>(F);

impl<F> Authenticator for FnAuthenticator<F>
where
    F: Fn(&UpgradeRequest) -> AuthResult + Send + Sync + 'static,
{
    fn authenticate<'a>(&'a self, request: &'a UpgradeRequest) -> BoxFuture<'a, AuthResult> {
        let result = (self.0)(request);
        Box::pin(std::future::ready(result))
    }
}

/// Asks the web app who the browser is: `POST`s to an endpoint of the app
/// with the upgrade request's `Cookie` and `Authorization` headers and a
/// JSON body `{"path": ..., "query": ...}`.
///
/// - 200 with `{"user_id": ID}` or `{"id": ID}` (string or number): the
///   connection belongs to that user; 200 without either: anonymous.
/// - 401 or 403: refused with that status.
/// - anything else, a timeout or an unreachable app: refused with 503.
///
/// It speaks plain HTTP/1.1 (the app usually sits next to the server, on
/// loopback or a private network); put TLS in front of the app, not here.
pub struct HttpAuthenticator {
    uri: Uri,
    host: String,
    port: u16,
    timeout: Duration,
}

/// Largest answer read from the auth endpoint.
const MAX_AUTH_BODY: usize = 64 * 1024;

impl HttpAuthenticator {
    /// `url` is `http://host[:port]/path`.
    pub fn new(url: &str) -> Result<Self, String> {
        let uri: Uri = url.parse().map_err(|e| format!("auth url {url:?}: {e}"))?;
        if uri.scheme_str() != Some("http") {
            return Err(format!("auth url {url:?}: only http:// is supported"));
        }
        let host = uri
            .host()
            .ok_or_else(|| format!("auth url {url:?}: no host"))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = uri.port_u16().unwrap_or(80);
        Ok(HttpAuthenticator {
            uri,
            host,
            port,
            timeout: Duration::from_secs(5),
        })
    }

    /// How long one check may take (5 s by default).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    async fn ask(&self, request: &UpgradeRequest) -> Result<(StatusCode, Bytes), String> {
        let stream = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        let driver = tokio::spawn(connection);
        let body = serde_json::json!({ "path": request.path, "query": request.query }).to_string();
        let path = self
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_string();
        let mut outgoing = Request::post(path)
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        let headers = outgoing.headers_mut();
        if let Some(authority) = self.uri.authority()
            && let Ok(v) = HeaderValue::from_str(authority.as_str())
        {
            headers.insert(header::HOST, v);
        }
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        headers.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
        for name in [header::COOKIE, header::AUTHORIZATION] {
            for value in request.headers.get_all(&name) {
                headers.append(name.clone(), value.clone());
            }
        }
        let response = sender
            .send_request(outgoing)
            .await
            .map_err(|e| format!("request: {e}"))?;
        let status = response.status();
        let body = Limited::new(response.into_body(), MAX_AUTH_BODY)
            .collect()
            .await
            .map_err(|e| format!("body: {e}"))?
            .to_bytes();
        driver.abort();
        Ok((status, body))
    }
}

/// The user id in an auth endpoint's 200 answer.
fn user_from_body(body: &[u8]) -> Result<Option<String>, String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("answer is not JSON: {e}"))?;
    let id = value.get("user_id").or_else(|| value.get("id"));
    match id {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(s)) if !s.is_empty() => Ok(Some(s.clone())),
        Some(serde_json::Value::Number(n)) => Ok(Some(n.to_string())),
        Some(other) => Err(format!(
            "user id {other} is not a non-empty string or a number"
        )),
    }
}

impl Authenticator for HttpAuthenticator {
    fn authenticate<'a>(&'a self, request: &'a UpgradeRequest) -> BoxFuture<'a, AuthResult> {
        Box::pin(check(self, request))
    }
}

async fn check(auth: &HttpAuthenticator, request: &UpgradeRequest) -> AuthResult {
    {
        let unavailable = |why: String| {
            tracing::warn!(url = %auth.uri, error = %why, "auth endpoint failed");
            Refusal {
                status: 503,
                message: "authentication is unavailable; try again".into(),
            }
        };
        let (status, body) = match tokio::time::timeout(auth.timeout, auth.ask(request)).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(why)) => return Err(unavailable(why)),
            Err(_) => return Err(unavailable("timed out".into())),
        };
        match status {
            StatusCode::OK => user_from_body(&body).map_err(unavailable),
            StatusCode::UNAUTHORIZED => Err(Refusal::unauthorized("not signed in")),
            StatusCode::FORBIDDEN => Err(Refusal::forbidden("not allowed")),
            other => Err(unavailable(format!("status {other}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_ids_from_answers() {
        assert_eq!(user_from_body(br#"{"user_id":"7"}"#), Ok(Some("7".into())));
        assert_eq!(user_from_body(br#"{"id":42}"#), Ok(Some("42".into())));
        assert_eq!(user_from_body(br#"{}"#), Ok(None));
        assert_eq!(user_from_body(b""), Ok(None));
        assert!(user_from_body(br#"{"id":""}"#).is_err());
        assert!(user_from_body(b"<html>").is_err());
    }

    #[test]
    fn request_helpers() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; session=abc; b=2"),
        );
        let req = UpgradeRequest {
            path: "/x".into(),
            query: Some("token=a%20b&x".into()),
            headers,
            params: Params::default(),
        };
        assert_eq!(req.cookie("session"), Some("abc"));
        assert_eq!(req.cookie("nope"), None);
        assert_eq!(req.query_param("token").as_deref(), Some("a b"));
        assert_eq!(req.query_param("x").as_deref(), Some(""));
        assert_eq!(req.query_param("y"), None);
    }

    #[test]
    fn only_plain_http_urls() {
        assert!(HttpAuthenticator::new("http://127.0.0.1:8000/auth").is_ok());
        assert!(HttpAuthenticator::new("https://example.com/auth").is_err());
        assert!(HttpAuthenticator::new("not a url").is_err());
    }
}
