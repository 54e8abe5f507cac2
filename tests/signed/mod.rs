//! Signing as the Pusher SDKs and pusher-js' auth endpoint do, for the
//! default app (`100000` / `resonance-key` / `resonance-secret`).
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use resonance::signing::{hmac_sha256_hex, md5_hex};

pub const APP_ID: &str = "100000";
pub const KEY: &str = "resonance-key";
pub const SECRET: &str = "resonance-secret";

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The `auth` of a private channel subscription.
pub fn private_auth(socket_id: &str, channel: &str) -> String {
    let sig = hmac_sha256_hex(SECRET, format!("{socket_id}:{channel}").as_bytes());
    format!("{KEY}:{sig}")
}

/// The `auth` of a presence channel subscription with its `channel_data`.
pub fn presence_auth(socket_id: &str, channel: &str, channel_data: &str) -> String {
    let sig = hmac_sha256_hex(
        SECRET,
        format!("{socket_id}:{channel}:{channel_data}").as_bytes(),
    );
    format!("{KEY}:{sig}")
}

/// A signed HTTP API request line + query (`path` without the query),
/// with extra query parameters `params` (already encoded, `k=v&...`).
pub fn signed_target(method: &str, path: &str, params: &str, body: &str, secret: &str) -> String {
    let mut pairs: Vec<String> = vec![
        format!("auth_key={KEY}"),
        format!("auth_timestamp={}", now()),
        "auth_version=1.0".into(),
    ];
    if !body.is_empty() {
        pairs.push(format!("body_md5={}", md5_hex(body.as_bytes())));
    }
    pairs.extend(
        params
            .split('&')
            .filter(|p| !p.is_empty())
            .map(String::from),
    );
    pairs.sort();
    let query = pairs.join("&");
    let signature = hmac_sha256_hex(secret, format!("{method}\n{path}\n{query}").as_bytes());
    format!("{path}?{query}&auth_signature={signature}")
}

/// Sends a signed API call; returns the status and the body.
pub async fn api(
    addr: SocketAddr,
    method: &str,
    path: &str,
    params: &str,
    body: &str,
) -> (u16, String) {
    api_with(addr, method, path, params, body, SECRET).await
}

pub async fn api_with(
    addr: SocketAddr,
    method: &str,
    path: &str,
    params: &str,
    body: &str,
    secret: &str,
) -> (u16, String) {
    let target = signed_target(method, path, params, body, secret);
    raw_request(addr, method, &target, body).await
}

/// An HTTP/1.1 request with `body` (JSON), answered as (status, body).
pub async fn raw_request(
    addr: SocketAddr,
    method: &str,
    target: &str,
    body: &str,
) -> (u16, String) {
    let request = format!(
        "{method} {target} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let (status, text) = super::common::http(addr, &request).await;
    let body = text
        .split_once("\r\n\r\n")
        .map_or(String::new(), |(_, b)| b.to_string());
    (status, body)
}

pub fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}
