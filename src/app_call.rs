//! Signed JSON `POST`s to the app: the egress under handler routes
//! ([`crate::custom::app_handlers`]) and the client-event hook
//! ([`crate::client_event_hook`]).
//!
//! Every call carries `Content-Type: application/json`,
//! `X-Resonance-Event: <event>` and `X-Resonance-Signature:
//! hex(HMAC-SHA256(app secret, exact body))`, so the app can tell the call
//! is ours. Calls share one keep-alive connection pool, are bounded in
//! number ([`MAX_IN_FLIGHT`] server-wide; the wait for a slot counts within
//! the call's timeout) and in time, answers are read up to
//! [`MAX_ANSWER_BYTES`], and a redirect is an answer like any other, never
//! followed.

use std::sync::OnceLock;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{HeaderName, HeaderValue};
use hyper::{Request, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::sync::Semaphore;

/// App calls in flight at once, server-wide (handler events and client
/// event hooks together); more wait for a slot within their timeout.
pub const MAX_IN_FLIGHT: usize = 256;
/// Largest answer read from the app.
pub const MAX_ANSWER_BYTES: usize = 1 << 20;

/// What became of a call.
#[derive(Debug)]
pub enum Outcome {
    /// The app answered (any status).
    Answered { status: u16, body: Bytes },
    /// No complete answer within the timeout (a slot wait included).
    TimedOut,
    /// The app could not be reached, or the exchange broke.
    Failed(String),
}

/// One call.
pub struct Call<'a> {
    pub url: &'a Uri,
    pub secret: &'a str,
    /// `X-Resonance-Event`.
    pub event: &'static str,
    pub body: Bytes,
    /// Extra headers (the browser's `Cookie`, `Authorization`,
    /// `X-Forwarded-For`).
    pub headers: Vec<(HeaderName, HeaderValue)>,
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
                .pool_max_idle_per_host(MAX_IN_FLIGHT)
                .build(connector),
            permits: Semaphore::new(MAX_IN_FLIGHT),
        }
    })
}

/// `hex(HMAC-SHA256(secret, body))`, the `X-Resonance-Signature` value.
pub fn signature(secret: &str, body: &[u8]) -> String {
    crate::signing::hmac_sha256_hex(secret, body)
}

/// Checks a handler or hook URL from the configuration: `http://` only
/// (the app sits next to the server; put TLS in front of the app, not
/// here), with a host.
pub fn parse_url(url: &str) -> Result<Uri, String> {
    let uri: Uri = url.parse().map_err(|e| format!("{url:?}: {e}"))?;
    match uri.scheme_str() {
        Some("http") => {}
        _ => return Err(format!("{url:?}: only http:// URLs are supported")),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(format!("{url:?}: no host"));
    }
    Ok(uri)
}

/// Posts `call` and waits for the answer, at most `call.timeout` in all.
pub async fn post(call: Call<'_>) -> Outcome {
    let timeout = call.timeout;
    match tokio::time::timeout(timeout, exchange(call)).await {
        Ok(outcome) => outcome,
        Err(_) => Outcome::TimedOut,
    }
}

async fn exchange(call: Call<'_>) -> Outcome {
    let shared = shared();
    let Ok(_permit) = shared.permits.acquire().await else {
        return Outcome::Failed("app calls are shutting down".into());
    };
    let signature = signature(call.secret, &call.body);
    let mut request = Request::post(call.url.clone())
        .header("content-type", "application/json")
        .header("accept", "application/json")
        .header("x-resonance-event", call.event)
        .header("x-resonance-signature", signature);
    if let Some(headers) = request.headers_mut() {
        for (name, value) in call.headers {
            headers.append(name, value);
        }
    }
    let request = match request.body(Full::new(call.body)) {
        Ok(r) => r,
        Err(e) => return Outcome::Failed(format!("request: {e}")),
    };
    let response = match shared.client.request(request).await {
        Ok(r) => r,
        Err(e) => return Outcome::Failed(format!("{e:?}")),
    };
    let status = response.status().as_u16();
    match Limited::new(response.into_body(), MAX_ANSWER_BYTES)
        .collect()
        .await
    {
        Ok(body) => Outcome::Answered {
            status,
            body: body.to_bytes(),
        },
        Err(e) => Outcome::Failed(format!("answer body: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert!(parse_url("http://127.0.0.1:8000/socket/chat").is_ok());
        assert!(parse_url("https://example.com/x").is_err());
        assert!(parse_url("/relative").is_err());
        assert!(parse_url("not a url").is_err());
    }

    #[test]
    fn signature_is_hmac_sha256_hex() {
        // RFC 4231 test case 2.
        assert_eq!(
            signature("Jefe", b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
