//! One webhook request: a POST over `http://` or `https://` (rustls with
//! the Mozilla roots), bounded in time and in what is read back.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::Request;
use hyper::header::{HeaderName, HeaderValue};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::ClientConfig;
use tokio_rustls::rustls::pki_types::ServerName;

/// How long one request may take, connection included.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How much of an answer is read (and ignored).
const MAX_ANSWER: usize = 64 * 1024;

/// Why a request did not get a 2xx.
#[derive(Debug)]
pub enum Failure {
    Status(u16),
    Network(String),
    Timeout,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Status(s) => write!(f, "answered HTTP {s}"),
            Failure::Network(e) => write!(f, "{e}"),
            Failure::Timeout => write!(f, "no answer within {}s", REQUEST_TIMEOUT.as_secs()),
        }
    }
}

fn tls() -> TlsConnector {
    static TLS: OnceLock<TlsConnector> = OnceLock::new();
    TLS.get_or_init(|| {
        let roots = tokio_rustls::rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map(|b| b.with_root_certificates(roots).with_no_client_auth())
            .unwrap_or_else(|_| unreachable_config());
        TlsConnector::from(Arc::new(config))
    })
    .clone()
}

#[cold]
fn unreachable_config() -> ClientConfig {
    // ring supports the safe default versions; this is never reached.
    ClientConfig::builder()
        .with_root_certificates(tokio_rustls::rustls::RootCertStore::empty())
        .with_no_client_auth()
}

/// POSTs `body` to `url` with `headers`; Ok on a 2xx answer.
pub async fn post(
    url: &hyper::Uri,
    headers: &[(HeaderName, HeaderValue)],
    body: Bytes,
) -> Result<(), Failure> {
    match tokio::time::timeout(REQUEST_TIMEOUT, post_inner(url, headers, body)).await {
        Ok(result) => result,
        Err(_) => Err(Failure::Timeout),
    }
}

async fn post_inner(
    url: &hyper::Uri,
    headers: &[(HeaderName, HeaderValue)],
    body: Bytes,
) -> Result<(), Failure> {
    let https = url.scheme_str() == Some("https");
    let host = url
        .host()
        .ok_or_else(|| Failure::Network("no host".into()))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port = url.port_u16().unwrap_or(if https { 443 } else { 80 });
    let tcp = TcpStream::connect((host, port))
        .await
        .map_err(|e| Failure::Network(format!("cannot connect to {host}:{port}: {e}")))?;
    let _ = tcp.set_nodelay(true);
    let path = url.path_and_query().map_or("/", |p| p.as_str());
    let authority = url.authority().map_or(host, |a| a.as_str());
    let mut request = Request::post(path)
        .header(hyper::header::HOST, authority)
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .header(
            hyper::header::USER_AGENT,
            concat!("resonance/", env!("CARGO_PKG_VERSION")),
        )
        .body(Full::new(body))
        .map_err(|e| Failure::Network(e.to_string()))?;
    for (name, value) in headers {
        request.headers_mut().insert(name.clone(), value.clone());
    }
    if https {
        let name = ServerName::try_from(host.to_string())
            .map_err(|e| Failure::Network(format!("bad TLS server name {host}: {e}")))?;
        let stream = tls()
            .connect(name, tcp)
            .await
            .map_err(|e| Failure::Network(format!("TLS with {host}: {e}")))?;
        exchange(TokioIo::new(stream), request).await
    } else {
        exchange(TokioIo::new(tcp), request).await
    }
}

/// Sends one request on a fresh HTTP/1.1 connection, driving the
/// connection in this task (no detached task).
async fn exchange<I>(io: I, request: Request<Full<Bytes>>) -> Result<(), Failure>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| Failure::Network(e.to_string()))?;
    let call = async move {
        let answer = sender
            .send_request(request)
            .await
            .map_err(|e| Failure::Network(e.to_string()))?;
        let status = answer.status();
        // Read (and drop) a bounded answer so the exchange completes.
        let _ = Limited::new(answer.into_body(), MAX_ANSWER).collect().await;
        if status.is_success() {
            Ok(())
        } else {
            Err(Failure::Status(status.as_u16()))
        }
    };
    tokio::pin!(call, conn);
    tokio::select! {
        biased;
        result = &mut call => result,
        ended = &mut conn => match ended {
            // The server closed after answering: the answer is ready.
            Ok(()) => call.await,
            Err(e) => Err(Failure::Network(e.to_string())),
        },
    }
}
