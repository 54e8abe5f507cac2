//! Server-side channel authorisation: the server asks the app's
//! `/broadcasting/auth` on behalf of a client, forwarding the client's
//! cookies and headers (laravel-echo-server style).
//!
//! This is how a Laravel session cookie identifies a WebSocket user without
//! the server knowing Laravel's session format: Laravel itself answers 200
//! (and, for presence, who the user is) or refuses. Calls are bounded in
//! time (`auth_timeout`) and in number (a semaphore), and a redirect is a
//! refusal, never followed (Laravel redirects guests to its login page).

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::Request;
use hyper::header::{HeaderName, HeaderValue};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::sync::Semaphore;

/// Auth calls in flight at once, server-wide.
const MAX_CONCURRENT: usize = 64;
/// Largest auth response read.
const MAX_RESPONSE: usize = 64 * 1024;

/// The answer of the app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// 200. `channel_data` is the presence member JSON (as text), if any.
    Allowed { channel_data: Option<String> },
    /// Anything else: the HTTP status (502 network error, 504 timeout).
    Refused { status: u16, reason: String },
}

/// One authorisation request.
pub struct AuthCall<'a> {
    pub endpoint: &'a str,
    pub channel: &'a str,
    pub socket_id: &'a str,
    /// The client's headers to forward verbatim (Socket.IO `auth.headers`).
    pub headers: &'a [(String, String)],
    /// The WebSocket/polling handshake's `Cookie`, used when `headers` has none.
    pub handshake_cookie: Option<&'a str>,
    pub timeout: Duration,
}

struct Shared {
    client: Client<HttpConnector, Full<Bytes>>,
    permits: Semaphore,
}

fn shared() -> &'static Shared {
    static SHARED: OnceLock<Shared> = OnceLock::new();
    SHARED.get_or_init(|| {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(5)));
        Shared {
            client: Client::builder(TokioExecutor::new())
                .pool_idle_timeout(Duration::from_secs(30))
                .build(connector),
            permits: Semaphore::new(MAX_CONCURRENT),
        }
    })
}

/// Headers that describe the client's own connection, not its identity.
fn forwardable(name: &str) -> bool {
    !matches!(
        name.to_ascii_lowercase().as_str(),
        "host"
            | "content-length"
            | "content-type"
            | "connection"
            | "transfer-encoding"
            | "upgrade"
            | "keep-alive"
    )
}

/// `application/x-www-form-urlencoded` body, as Laravel's route expects.
fn form_body(channel: &str, socket_id: &str) -> String {
    let enc = |s: &str| {
        percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
    };
    format!("channel_name={}&socket_id={}", enc(channel), enc(socket_id))
}

/// Asks the app whether the client may join the channel.
pub async fn authorize(call: AuthCall<'_>) -> Verdict {
    authorize_with(&shared().permits, call).await
}

/// [`authorize`] with its concurrency limit given. Everything — the wait
/// for a permit, connecting, the answer and its body — happens within
/// `call.timeout`: when the app is slow, calls queue for permits, and a
/// wait outside the timeout would leave clients pending for ever.
async fn authorize_with(permits: &Semaphore, call: AuthCall<'_>) -> Verdict {
    let timeout = call.timeout;
    let deadline = tokio::time::Instant::now() + timeout;
    match tokio::time::timeout_at(deadline, exchange(permits, call, deadline)).await {
        Ok(verdict) => verdict,
        Err(_) => Verdict::Refused {
            status: 504,
            reason: format!("auth endpoint did not answer within {timeout:?}"),
        },
    }
}

/// A permit won with less time than this left is not used: the call could
/// not be answered in time, and the slow calls whose timeout freed the
/// permit may still be open at the app.
const LAST_MOMENT: Duration = Duration::from_millis(100);

async fn exchange(
    permits: &Semaphore,
    call: AuthCall<'_>,
    deadline: tokio::time::Instant,
) -> Verdict {
    let refused = |status: u16, reason: String| Verdict::Refused { status, reason };
    let Ok(_permit) = permits.acquire().await else {
        return refused(503, "auth calls are shutting down".into());
    };
    if deadline.saturating_duration_since(tokio::time::Instant::now()) < LAST_MOMENT {
        return refused(
            504,
            format!(
                "auth endpoint did not answer within {:?} (every call slot was busy)",
                call.timeout
            ),
        );
    }
    let mut request = Request::post(call.endpoint)
        .header("content-type", "application/x-www-form-urlencoded")
        .header("accept", "application/json")
        .header("x-requested-with", "XMLHttpRequest");
    let mut has_cookie = false;
    for (name, value) in call.headers {
        if !forwardable(name) {
            continue;
        }
        has_cookie |= name.eq_ignore_ascii_case("cookie");
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            request = request.header(n, v);
        }
    }
    if !has_cookie
        && let Some(cookie) = call
            .handshake_cookie
            .and_then(|c| HeaderValue::from_str(c).ok())
    {
        request = request.header("cookie", cookie);
    }
    let request = match request.body(Full::new(Bytes::from(form_body(
        call.channel,
        call.socket_id,
    )))) {
        Ok(r) => r,
        Err(e) => return refused(500, format!("cannot build the auth request: {e}")),
    };
    let response = match shared().client.request(request).await {
        Ok(r) => r,
        Err(e) => return refused(502, format!("auth endpoint unreachable: {e}")),
    };
    let status = response.status().as_u16();
    // Bounded: an answer larger than MAX_RESPONSE is an error, not a buffer.
    let body = match Limited::new(response.into_body(), MAX_RESPONSE)
        .collect()
        .await
    {
        Ok(body) => body.to_bytes(),
        Err(_) => {
            return refused(
                502,
                format!("could not read the auth endpoint's answer (at most {MAX_RESPONSE} bytes)"),
            );
        }
    };
    if status != 200 {
        return refused(status, format!("auth endpoint answered HTTP {status}"));
    }
    Verdict::Allowed {
        channel_data: channel_data_of(&body),
    }
}

/// The presence `channel_data` of an auth answer: an object, or a string
/// holding one (Laravel's pusher broadcaster returns a string).
pub fn channel_data_of(body: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    match value.get("channel_data")? {
        serde_json::Value::String(s) => Some(s.clone()),
        v @ serde_json::Value::Object(_) => Some(v.to_string()),
        _ => None,
    }
}

/// A shareable list of forwarded headers.
pub type Headers = Arc<[(String, String)]>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_data_forms() {
        assert_eq!(
            channel_data_of(br#"{"channel_data":{"user_id":7}}"#).as_deref(),
            Some(r#"{"user_id":7}"#)
        );
        assert_eq!(
            channel_data_of(br#"{"auth":"k:s","channel_data":"{\"user_id\":7}"}"#).as_deref(),
            Some(r#"{"user_id":7}"#)
        );
        assert_eq!(channel_data_of(b"true"), None);
        assert_eq!(channel_data_of(b"<html>"), None);
    }

    #[test]
    fn form_encoding() {
        assert_eq!(
            form_body("private-a.1", "1.2"),
            "channel_name=private%2Da%2E1&socket_id=1%2E2"
        );
    }

    #[tokio::test]
    async fn the_wait_for_a_permit_counts_within_the_timeout() {
        // Every permit is taken (the app is slow for everyone): the call must
        // give up with 504 after its timeout, not queue for ever.
        let permits = Semaphore::new(1);
        let _held = permits.acquire().await.unwrap();
        let started = std::time::Instant::now();
        let call = authorize_with(
            &permits,
            AuthCall {
                endpoint: "http://127.0.0.1:9/broadcasting/auth",
                channel: "private-a",
                socket_id: "1.2",
                headers: &[],
                handshake_cookie: None,
                timeout: Duration::from_millis(200),
            },
        );
        let verdict = tokio::time::timeout(Duration::from_secs(5), call)
            .await
            .expect("the permit wait is bounded by auth_timeout");
        assert!(
            matches!(verdict, Verdict::Refused { status: 504, .. }),
            "{verdict:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[tokio::test]
    async fn an_oversized_answer_is_refused() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf).await;
            let body = "x".repeat(MAX_RESPONSE + 1);
            let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len());
            let _ = s.write_all(head.as_bytes()).await;
            let _ = s.write_all(body.as_bytes()).await;
        });
        let endpoint = format!("http://{addr}/broadcasting/auth");
        let verdict = authorize(AuthCall {
            endpoint: &endpoint,
            channel: "private-a",
            socket_id: "1.2",
            headers: &[],
            handshake_cookie: None,
            timeout: Duration::from_secs(2),
        })
        .await;
        assert!(
            matches!(verdict, Verdict::Refused { status: 502, .. }),
            "{verdict:?}"
        );
    }

    #[tokio::test]
    async fn unreachable_and_refusing_endpoints() {
        // A port with nothing listening: a network error, reported as 502.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let endpoint = format!("http://127.0.0.1:{port}/broadcasting/auth");
        let verdict = authorize(AuthCall {
            endpoint: &endpoint,
            channel: "private-a",
            socket_id: "1.2",
            headers: &[],
            handshake_cookie: None,
            timeout: Duration::from_secs(2),
        })
        .await;
        assert!(
            matches!(verdict, Verdict::Refused { status: 502, .. }),
            "{verdict:?}"
        );

        // A real HTTP server that redirects: refused with 302, not followed.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf).await;
            let _ = s
                .write_all(b"HTTP/1.1 302 Found\r\nLocation: /login\r\nContent-Length: 0\r\n\r\n")
                .await;
        });
        let endpoint = format!("http://{addr}/broadcasting/auth");
        let verdict = authorize(AuthCall {
            endpoint: &endpoint,
            channel: "private-a",
            socket_id: "1.2",
            headers: &[("Cookie".into(), "laravel_session=x".into())],
            handshake_cookie: None,
            timeout: Duration::from_secs(2),
        })
        .await;
        assert!(
            matches!(verdict, Verdict::Refused { status: 302, .. }),
            "{verdict:?}"
        );
    }
}
