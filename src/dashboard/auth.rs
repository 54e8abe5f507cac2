//! Who may see the dashboard, and how a browser proves it.
//!
//! - Credentials: an app's key **and** secret open that app's dashboard;
//!   `dashboard_token` (operators) opens every app. They are posted once to
//!   `POST /dashboard/login` (a body, never a URL that lands in access
//!   logs) and compared in constant time.
//! - Session: a cookie `resonance_dashboard=v1.<expiry>.<scope>.<mac>`,
//!   `HttpOnly; SameSite=Strict; Path=/dashboard` (`Secure` over TLS). The
//!   MAC is keyed by the credential itself, so every node of a cluster
//!   accepts the cookie without shared state, and rotating the secret or
//!   the token ends every session made with it.
//! - CSRF: state-changing requests (the test event, logout) need the
//!   `X-Dashboard-Csrf` header, a MAC of the cookie that only the page's
//!   script learns (a cross-site form cannot set a header), and an `Origin`
//!   that matches the `Host` when the browser sends one. The live WebSocket
//!   checks the `Origin` too (browsers send cookies with cross-site
//!   WebSocket handshakes).
//! - Scripts: `Authorization: Bearer <dashboard_token>` works on the JSON
//!   endpoints (no cookie, so no CSRF).

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;

use hyper::HeaderMap;
use hyper::header::{AUTHORIZATION, COOKIE, HOST, ORIGIN};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::ServerConfig;
use crate::core::node::Node;
use crate::signing::hmac_sha256_hex;

/// The session cookie's name.
pub const COOKIE_NAME: &str = "resonance_dashboard";
/// How long a login lasts, in seconds.
pub const SESSION_SECONDS: u64 = 12 * 60 * 60;
/// The header carrying the CSRF token.
pub const CSRF_HEADER: &str = "x-dashboard-csrf";

/// Failed logins allowed per client address within [`FAILURE_WINDOW`].
pub const MAX_FAILURES: u32 = 10;
pub const FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// Addresses tracked at most (older entries are swept first).
const MAX_TRACKED: usize = 4096;

/// Failed logins by client address: after [`MAX_FAILURES`] within a
/// window, that address is refused (429) until the window ends, right
/// credentials included, so guessing stays hopeless. Successful logins
/// cost nothing.
#[derive(Default)]
pub struct Failures {
    by_ip: Mutex<HashMap<IpAddr, (u32, Instant)>>,
}

impl Failures {
    /// Whether `ip` has used up its failures.
    pub fn blocked(&self, ip: IpAddr) -> bool {
        self.by_ip
            .lock()
            .get(&ip)
            .is_some_and(|(n, since)| *n >= MAX_FAILURES && since.elapsed() < FAILURE_WINDOW)
    }

    /// Counts a failed login from `ip`.
    pub fn failed(&self, ip: IpAddr) {
        let mut map = self.by_ip.lock();
        if map.len() >= MAX_TRACKED && !map.contains_key(&ip) {
            map.retain(|_, (_, since)| since.elapsed() < FAILURE_WINDOW);
            if map.len() >= MAX_TRACKED {
                return;
            }
        }
        let entry = map.entry(ip).or_insert((0, Instant::now()));
        if entry.1.elapsed() >= FAILURE_WINDOW {
            *entry = (0, Instant::now());
        }
        entry.0 += 1;
    }
}

/// What a session may see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Every app (the operators' token).
    All,
    /// One app, by id (its key and secret).
    App(String),
}

impl Scope {
    pub fn allows(&self, app_id: &str) -> bool {
        match self {
            Scope::All => true,
            Scope::App(id) => id == app_id,
        }
    }

    fn encode(&self) -> String {
        match self {
            Scope::All => "*".into(),
            Scope::App(id) => format!("app:{}", hex::encode(id)),
        }
    }

    fn decode(text: &str) -> Option<Scope> {
        if text == "*" {
            return Some(Scope::All);
        }
        let id = hex::decode(text.strip_prefix("app:")?).ok()?;
        String::from_utf8(id).ok().map(Scope::App)
    }
}

/// An authenticated dashboard request.
#[derive(Debug, Clone)]
pub struct Session {
    pub scope: Scope,
    /// Whether it came with the cookie (then CSRF rules apply) or a bearer
    /// token.
    pub cookie: Option<String>,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Equality of two secrets that leaks neither their content nor their
/// length (both are hashed first).
pub fn same_secret(a: &str, b: &str) -> bool {
    let (ha, hb) = (Sha256::digest(a.as_bytes()), Sha256::digest(b.as_bytes()));
    bool::from(ha.ct_eq(&hb))
}

/// The credential that signs `scope`'s cookies.
fn credential(node: &Node, config: &ServerConfig, scope: &Scope) -> Option<String> {
    match scope {
        Scope::All => config.dashboard_token.clone(),
        Scope::App(id) => node.by_id(id).map(|hub| hub.app.secret.clone()),
    }
}

fn mac(credential: &str, expiry: u64, scope: &str) -> String {
    hmac_sha256_hex(
        credential,
        format!("resonance-dashboard|v1|{expiry}|{scope}").as_bytes(),
    )
}

/// Checks posted credentials: `token`, or `key` + `secret`.
pub fn login(
    node: &Node,
    config: &ServerConfig,
    token: Option<&str>,
    key: Option<&str>,
    secret: Option<&str>,
) -> Option<Scope> {
    if let Some(token) = token.filter(|t| !t.is_empty()) {
        let expected = config.dashboard_token.as_deref()?;
        return same_secret(token, expected).then_some(Scope::All);
    }
    let (key, secret) = (key?, secret?);
    // The key is public: it finds the app; only the secret authorises.
    let hub = node.by_key(key)?;
    same_secret(secret, &hub.app.secret).then(|| Scope::App(hub.app.id.clone()))
}

/// A fresh session cookie value for `scope`.
pub fn issue(node: &Node, config: &ServerConfig, scope: &Scope) -> Option<String> {
    let credential = credential(node, config, scope)?;
    let expiry = now() + SESSION_SECONDS;
    let scope = scope.encode();
    Some(format!(
        "v1.{expiry}.{scope}.{}",
        mac(&credential, expiry, &scope)
    ))
}

/// The scope of a cookie value, if it is genuine and not expired.
pub fn verify(node: &Node, config: &ServerConfig, value: &str) -> Option<Scope> {
    let mut parts = value.splitn(4, '.');
    let (version, expiry, scope_text, given) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if version != "v1" {
        return None;
    }
    let expiry: u64 = expiry.parse().ok()?;
    if expiry < now() {
        return None;
    }
    let scope = Scope::decode(scope_text)?;
    let credential = credential(node, config, &scope)?;
    crate::signing::same(given, &mac(&credential, expiry, scope_text)).then_some(scope)
}

/// The CSRF token that goes with a cookie.
pub fn csrf_token(node: &Node, config: &ServerConfig, cookie: &str) -> Option<String> {
    let scope = verify(node, config, cookie)?;
    let credential = credential(node, config, &scope)?;
    Some(hmac_sha256_hex(
        &credential,
        format!("resonance-dashboard-csrf|{cookie}").as_bytes(),
    ))
}

/// The dashboard cookie of a request, if any.
pub fn cookie_of(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE_NAME)
        .map(|(_, v)| v.trim().to_string())
}

/// Authenticates a request by its bearer token or its session cookie.
pub fn authenticate(node: &Node, config: &ServerConfig, headers: &HeaderMap) -> Option<Session> {
    let bearer = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim);
    if let Some(bearer) = bearer {
        let expected = config.dashboard_token.as_deref()?;
        return same_secret(bearer, expected).then_some(Session {
            scope: Scope::All,
            cookie: None,
        });
    }
    let cookie = cookie_of(headers)?;
    let scope = verify(node, config, &cookie)?;
    Some(Session {
        scope,
        cookie: Some(cookie),
    })
}

/// Whether the request's `Origin` (when sent) names the host it was sent
/// to: a page on another site never passes.
pub fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(ORIGIN) else {
        // Not a browser request across sites: browsers send Origin on every
        // cross-origin POST and WebSocket handshake.
        return true;
    };
    let (Some(origin), Some(host)) = (
        origin.to_str().ok(),
        headers.get(HOST).and_then(|h| h.to_str().ok()),
    ) else {
        return false;
    };
    let authority = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"));
    authority.is_some_and(|a| a.eq_ignore_ascii_case(host))
}

/// Whether a state-changing request passes the CSRF checks.
pub fn csrf_ok(node: &Node, config: &ServerConfig, session: &Session, headers: &HeaderMap) -> bool {
    let Some(cookie) = &session.cookie else {
        // A bearer token is a header a cross-site page cannot set.
        return true;
    };
    let given = headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok());
    let expected = csrf_token(node, config, cookie);
    same_origin(headers)
        && matches!((given, expected), (Some(g), Some(e)) if crate::signing::same(g, &e))
}

/// The `Set-Cookie` value for a session (an empty value with `Max-Age=0`
/// logs out).
pub fn set_cookie(value: &str, secure: bool) -> String {
    let max_age = if value.is_empty() { 0 } else { SESSION_SECONDS };
    let secure = if secure { "; Secure" } else { "" };
    format!(
        "{COOKIE_NAME}={value}; Path=/dashboard; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::adapter::LocalAdapter;
    use crate::core::app::AppConfig;
    use std::sync::Arc;

    fn setup() -> (Arc<Node>, ServerConfig) {
        let app = |id: &str, key: &str, secret: &str| AppConfig {
            id: id.into(),
            key: key.into(),
            secret: secret.into(),
            ..AppConfig::default()
        };
        let node = Node::new(
            vec![
                app("1", "key-one", "secret-one"),
                app("2", "key-two", "secret-two"),
            ],
            Arc::new(LocalAdapter),
        );
        let config = ServerConfig {
            dashboard: true,
            dashboard_token: Some("operators-token-0123456789".into()),
            ..ServerConfig::default()
        };
        (node, config)
    }

    #[test]
    fn login_needs_the_secret_and_scopes_to_the_app() {
        let (node, config) = setup();
        let login = |t, k, s| login(&node, &config, t, k, s);
        assert_eq!(
            login(None, Some("key-one"), Some("secret-one")),
            Some(Scope::App("1".into()))
        );
        assert_eq!(login(None, Some("key-one"), Some("secret-two")), None);
        assert_eq!(login(None, Some("key-one"), None), None);
        assert_eq!(login(None, Some("key-one"), Some("")), None);
        assert_eq!(
            login(Some("operators-token-0123456789"), None, None),
            Some(Scope::All)
        );
        assert_eq!(login(Some("operators-token"), None, None), None);
        let no_token = ServerConfig {
            dashboard_token: None,
            ..config.clone()
        };
        assert_eq!(super::login(&node, &no_token, Some("x"), None, None), None);
    }

    #[test]
    fn cookies_verify_and_resist_tampering() {
        let (node, config) = setup();
        let one = issue(&node, &config, &Scope::App("1".into())).unwrap();
        assert_eq!(verify(&node, &config, &one), Some(Scope::App("1".into())));
        // Rewriting the scope (to app 2 or to all) breaks the MAC.
        let parts: Vec<&str> = one.splitn(4, '.').collect();
        let forged = format!(
            "v1.{}.{}.{}",
            parts[1],
            Scope::App("2".into()).encode(),
            parts[3]
        );
        assert_eq!(verify(&node, &config, &forged), None);
        let forged = format!("v1.{}.*.{}", parts[1], parts[3]);
        assert_eq!(verify(&node, &config, &forged), None);
        let later = format!(
            "v1.{}.{}.{}",
            parts[1].parse::<u64>().unwrap() + 1,
            parts[2],
            parts[3]
        );
        assert_eq!(verify(&node, &config, &later), None);
        assert_eq!(verify(&node, &config, "v1.1.*.00"), None);
        assert_eq!(verify(&node, &config, "garbage"), None);
        let all = issue(&node, &config, &Scope::All).unwrap();
        assert_eq!(verify(&node, &config, &all), Some(Scope::All));
        // Rotating the token ends the operators' sessions.
        let rotated = ServerConfig {
            dashboard_token: Some("another-token-0123456789".into()),
            ..config.clone()
        };
        assert_eq!(verify(&node, &rotated, &all), None);
    }

    #[test]
    fn csrf_needs_the_header_and_the_same_origin() {
        let (node, config) = setup();
        let cookie = issue(&node, &config, &Scope::App("1".into())).unwrap();
        let session = Session {
            scope: Scope::App("1".into()),
            cookie: Some(cookie.clone()),
        };
        let token = csrf_token(&node, &config, &cookie).unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(HOST, "ws.example.com".parse().unwrap());
        assert!(!csrf_ok(&node, &config, &session, &headers));
        headers.insert(CSRF_HEADER, token.parse().unwrap());
        assert!(csrf_ok(&node, &config, &session, &headers));
        headers.insert(ORIGIN, "https://ws.example.com".parse().unwrap());
        assert!(csrf_ok(&node, &config, &session, &headers));
        headers.insert(ORIGIN, "https://evil.example".parse().unwrap());
        assert!(!csrf_ok(&node, &config, &session, &headers));
        headers.insert(ORIGIN, "https://ws.example.com".parse().unwrap());
        headers.insert(CSRF_HEADER, "0".repeat(64).parse().unwrap());
        assert!(!csrf_ok(&node, &config, &session, &headers));
    }

    #[test]
    fn cookie_is_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.insert(
            COOKIE,
            "a=b; resonance_dashboard=v1.2.*.ff; c=d".parse().unwrap(),
        );
        assert_eq!(cookie_of(&headers).as_deref(), Some("v1.2.*.ff"));
    }
}
