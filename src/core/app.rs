//! Apps: the tenants of a server. Each has credentials and its own limits.
//!
//! Limits default to Pusher's published ones (reference §7) because that is
//! what SDKs and apps written against Pusher expect; every one is a per-app
//! setting because self-hosters most often need to raise them.

use serde::{Deserialize, Serialize};

/// One app's credentials and options, as written in the config file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AppConfig {
    /// Numeric id (the Python SDK and Laravel's installers only accept digits).
    pub id: String,
    /// Public key: browsers connect to `/app/{key}`.
    pub key: String,
    /// Secret: signs channel auth and HTTP API requests. Never sent anywhere.
    pub secret: String,
    /// Whether `client-*` events (Echo's whispers) are relayed.
    pub client_events: bool,
    /// Client events accepted per second per connection (over → error 4301).
    pub client_event_rate: u32,
    /// Concurrent connections allowed; 0 means unlimited.
    pub max_connections: u64,
    /// Largest `data` of one event, in bytes (HTTP API and client events).
    pub max_event_bytes: usize,
    /// Channels one HTTP trigger may name.
    pub max_channels_per_event: usize,
    /// Events one batch trigger may carry.
    pub max_events_per_batch: usize,
    /// Distinct users in one presence channel.
    pub max_presence_members: usize,
    /// Size of one member's `user_info`, in bytes.
    pub max_presence_member_bytes: usize,
    /// Origins allowed to open WebSockets; `*` is a wildcard inside a pattern.
    pub allowed_origins: Vec<String>,
    /// Seconds of silence after which the server pings a client (and the
    /// value pusher-js uses for its own pings).
    pub activity_timeout: u64,
    /// Send `pusher_internal:subscription_count` on non-presence channels.
    pub subscription_count_events: bool,
    /// Redis to ingest Laravel's `redis` broadcaster from (`redis://...`).
    pub redis_url: Option<String>,
    /// Laravel's Redis key prefix, stripped from channel names (may be empty).
    pub redis_prefix: String,
    /// The app's `/broadcasting/auth`, asked by the server for subscriptions
    /// that arrive without a signature (laravel-echo-server style).
    pub auth_endpoint: Option<String>,
    /// Seconds an auth endpoint call may take.
    pub auth_timeout: u64,
    /// Serve Laravel Echo's `socket.io` connector at `/socket.io/` for this
    /// app (the first app that enables it owns the path).
    pub socketio: bool,
    /// Keys accepted as `Bearer` tokens / `auth_key` by the
    /// laravel-echo-server API (its `clients` keys). Secret: never the
    /// public `key`. Empty means that API is off.
    pub extra_api_keys: Vec<String>,
    /// Channels one connection may be subscribed to at once (over → a
    /// `LimitReached` subscription error, status 429).
    pub max_subscriptions_per_connection: usize,
    /// HTTP API requests per second accepted for this app; 0 means
    /// unlimited (over → 429).
    pub max_api_rate: u32,
    /// `http://` URL that `client-*` events are posted to before they are
    /// relayed (see `crate::client_event_hook`); unset: relayed at once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_event_hook: Option<String>,
    /// Webhook targets (`[[apps.webhooks]]`): who hears what happens.
    pub webhooks: Vec<super::webhook_target::WebhookTarget>,
}

impl Default for AppConfig {
    fn default() -> Self {
        AppConfig {
            id: "100000".into(),
            key: "resonance-key".into(),
            secret: "resonance-secret".into(),
            client_events: true,
            client_event_rate: 10,
            max_connections: 0,
            max_event_bytes: 10 * 1024,
            max_channels_per_event: 100,
            max_events_per_batch: 10,
            max_presence_members: 100,
            max_presence_member_bytes: 1024,
            allowed_origins: vec!["*".into()],
            activity_timeout: 120,
            subscription_count_events: false,
            redis_url: None,
            redis_prefix: String::new(),
            auth_endpoint: None,
            auth_timeout: 5,
            socketio: true,
            extra_api_keys: Vec::new(),
            max_subscriptions_per_connection: 100,
            max_api_rate: 0,
            client_event_hook: None,
            webhooks: Vec::new(),
        }
    }
}

/// Shortest accepted `extra_api_keys` entry: these keys are the only
/// credential of the unsigned laravel-echo-server API.
pub const MIN_API_KEY_LEN: usize = 16;

impl AppConfig {
    /// Checks the values that would make the app unusable, naming the key.
    pub fn validate(&self, prefix: &str) -> Result<(), String> {
        let bad = |key: &str, problem: &str| Err(format!("{prefix}.{key}: {problem}"));
        if self.id.is_empty()
            || !self
                .id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return bad(
                "id",
                "must be non-empty letters, digits, '-' or '_' (digits only for Pusher SDKs)",
            );
        }
        if self.key.is_empty() || !self.key.bytes().all(|b| b.is_ascii_graphic() && b != b'/') {
            return bad("key", "must be non-empty, printable, without spaces or '/'");
        }
        if self.secret.len() < 8 {
            return bad("secret", "must be at least 8 characters");
        }
        for (i, k) in self.extra_api_keys.iter().enumerate() {
            if k.len() < MIN_API_KEY_LEN {
                return bad(
                    &format!("extra_api_keys[{i}]"),
                    &format!(
                        "must be at least {MIN_API_KEY_LEN} characters (it is a password for the unsigned API)"
                    ),
                );
            }
            if *k == self.key {
                return bad(
                    &format!("extra_api_keys[{i}]"),
                    "must not be the app key: the key is public (browsers send it), an API key must be secret",
                );
            }
        }
        if let Some(url) = &self.client_event_hook {
            crate::app_call::parse_url(url)
                .map_err(|e| format!("{prefix}.client_event_hook: {e}"))?;
        }
        if self.activity_timeout == 0 {
            return bad("activity_timeout", "must be at least 1 second");
        }
        if self.max_event_bytes == 0 {
            return bad("max_event_bytes", "must be at least 1");
        }
        if let Some(url) = &self.redis_url
            && !(url.starts_with("redis://") || url.starts_with("rediss://"))
        {
            return bad("redis_url", "must start with redis:// or rediss://");
        }
        if let Some(url) = &self.auth_endpoint
            && !url.starts_with("http://")
        {
            return bad(
                "auth_endpoint",
                "must be an http:// URL (put TLS in front of the app, not between it and Resonance)",
            );
        }
        if self.max_subscriptions_per_connection == 0 {
            return bad("max_subscriptions_per_connection", "must be at least 1");
        }
        if self.auth_timeout == 0 {
            return bad("auth_timeout", "must be at least 1 second");
        }
        for (i, target) in self.webhooks.iter().enumerate() {
            target.validate(&format!("{prefix}.webhooks[{i}]"))?;
        }
        if self.client_event_rate == 0 && self.client_events {
            return bad(
                "client_event_rate",
                "must be at least 1 when client_events is true",
            );
        }
        Ok(())
    }

    /// Whether a browser `Origin` header may open a connection to this app.
    /// A missing origin (non-browser clients) is allowed.
    pub fn origin_allowed(&self, origin: Option<&str>) -> bool {
        let Some(origin) = origin else { return true };
        self.allowed_origins
            .iter()
            .any(|pattern| wildcard_match(pattern.as_bytes(), origin.as_bytes()))
    }
}

/// Glob match where `*` stands for any run of characters (case-insensitive,
/// as origins are).
pub fn wildcard_match(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while t < text.len() {
        if p < pattern.len() && pattern[p] != b'*' && pattern[p].eq_ignore_ascii_case(&text[t]) {
            p += 1;
            t += 1;
        } else if p < pattern.len() && pattern[p] == b'*' {
            star = Some(p);
            p += 1;
            mark = t;
        } else if let Some(s) = star {
            p = s + 1;
            mark += 1;
            t = mark;
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards() {
        assert!(wildcard_match(b"*", b"https://x.y"));
        assert!(wildcard_match(
            b"https://*.example.com",
            b"https://app.example.com"
        ));
        assert!(!wildcard_match(
            b"https://*.example.com",
            b"https://example.org"
        ));
        assert!(wildcard_match(
            b"https://APP.example.com",
            b"https://app.example.com"
        ));
        assert!(!wildcard_match(
            b"https://app.example.com",
            b"https://app.example.com.evil"
        ));
    }

    #[test]
    fn origins() {
        let app = AppConfig {
            allowed_origins: vec!["https://app.example.com".into()],
            ..AppConfig::default()
        };
        assert!(app.origin_allowed(None));
        assert!(app.origin_allowed(Some("https://app.example.com")));
        assert!(!app.origin_allowed(Some("https://other.example.com")));
    }

    #[test]
    fn validation_names_the_key() {
        let app = AppConfig {
            id: "a b".into(),
            ..AppConfig::default()
        };
        let err = app.validate("apps[0]").unwrap_err();
        assert!(err.starts_with("apps[0].id:"), "{err}");
        assert!(AppConfig::default().validate("apps[0]").is_ok());
    }

    #[test]
    fn api_keys_must_be_secret_and_long() {
        let public = AppConfig {
            extra_api_keys: vec!["resonance-key".into()],
            ..AppConfig::default()
        };
        let err = public.validate("apps[0]").unwrap_err();
        assert!(err.starts_with("apps[0].extra_api_keys[0]:"), "{err}");
        let same = AppConfig {
            key: "0123456789abcdef0123".into(),
            extra_api_keys: vec!["0123456789abcdef0123".into()],
            ..AppConfig::default()
        };
        let err = same.validate("apps[0]").unwrap_err();
        assert!(err.contains("must not be the app key"), "{err}");
        let good = AppConfig {
            extra_api_keys: vec!["0123456789abcdef0123".into()],
            ..AppConfig::default()
        };
        assert!(good.validate("apps[0]").is_ok());
    }
}
