//! Ordinary HTTP routes next to the sockets (a page, a health check of the
//! embedding app): a path pattern, a method, and an `async` function from
//! [`HttpRequest`] to a response.

use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use http_body_util::Full;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{HeaderMap, Method, StatusCode};

use super::route::Params;

/// The response type of HTTP routes (hyper's, with a complete body).
pub type HttpResponse = hyper::Response<Full<Bytes>>;

/// A request to an HTTP route, body read (up to `max_request_bytes`).
#[derive(Debug, Clone)]
pub struct HttpRequest {
    pub method: Method,
    pub path: String,
    pub query: Option<String>,
    pub headers: HeaderMap,
    pub params: Params,
    pub body: Bytes,
}

type HttpFn = dyn Fn(HttpRequest) -> BoxFuture<'static, HttpResponse> + Send + Sync;

/// An HTTP route's function, type-erased.
#[derive(Clone)]
pub(crate) struct HttpHandler(pub(crate) Arc<HttpFn>);

impl HttpHandler {
    pub(crate) fn new<F, Fut>(f: F) -> Self
    where
        F: Fn(HttpRequest) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = HttpResponse> + Send + 'static,
    {
        HttpHandler(Arc::new(move |req| Box::pin(f(req))))
    }
}

/// A response with `status`, a content type and a body.
pub fn response(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> HttpResponse {
    let mut r = hyper::Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// 200 with an HTML page.
pub fn html(body: impl Into<Bytes>) -> HttpResponse {
    response(StatusCode::OK, "text/html; charset=utf-8", body)
}

/// 200 with plain text.
pub fn text(body: impl Into<Bytes>) -> HttpResponse {
    response(StatusCode::OK, "text/plain; charset=utf-8", body)
}

/// A JSON response.
pub fn json(status: StatusCode, value: &serde_json::Value) -> HttpResponse {
    response(status, "application/json", value.to_string())
}
