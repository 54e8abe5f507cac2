//! Configuration: built-in defaults, then a TOML file, then `RESONANCE_*`
//! environment variables, then command-line flags — each layer overriding
//! the one before. A bad value is refused at start with the key (or
//! variable) that holds it and what is wrong with it.

use std::collections::HashSet;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::core::app::AppConfig;

/// Server-wide settings (the `[server]` table).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address to listen on.
    pub host: String,
    pub port: u16,
    /// Seconds that shutdown waits for connections to close.
    pub shutdown_grace: u64,
    /// Seconds to wait for a pong after the server pinged an idle client.
    pub pong_timeout: u64,
    /// Seconds a write to a client may take before it is dropped.
    pub write_timeout: u64,
    /// Largest WebSocket message accepted from a client, in bytes.
    pub max_message_bytes: usize,
    /// Frames queued per connection before it counts as a slow consumer and
    /// is closed with 4100 (pusher-js reconnects after a short back-off).
    pub outbox_limit: usize,
    /// Largest HTTP API request body, in bytes.
    pub max_request_bytes: usize,
    /// Log filter (`info`, `debug`, `resonance=trace`, ...).
    pub log: String,
    /// PEM certificate (chain) and key: serve `wss://` and `https://`.
    pub tls_cert: Option<String>,
    pub tls_key: Option<String>,
    /// Extra PEM certificates appended to the chain (laravel-echo-server's
    /// `sslCertChainPath`).
    pub tls_chain: Option<String>,
    /// CORS on the HTTP API, for apps that call it from a browser.
    pub api_cors: Option<ApiCors>,
    /// A path serving a built-in echo WebSocket route (for conformance
    /// checks such as Autobahn; it accepts messages up to 16 MiB); off when
    /// unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub echo_path: Option<String>,
    /// Seconds a new connection has to finish its TLS handshake and send
    /// complete HTTP request headers (slowloris guard).
    pub handshake_timeout: u64,
    /// Largest HTTP request head (request line and headers), in bytes;
    /// larger heads are answered 431.
    pub max_header_bytes: usize,
    /// Concurrent connections (WebSocket, Socket.IO, HTTP) from one client
    /// IP address; 0 means unlimited. Behind a proxy every client shares
    /// the proxy's address: leave it at 0 there.
    pub max_connections_per_ip: u64,
    /// HTTP API requests per second accepted from one client IP address;
    /// 0 means unlimited (over → 429).
    pub api_rate_per_ip: u32,
    /// When set, `/metrics` answers only requests carrying
    /// `Authorization: Bearer <token>` (or `?token=`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics_token: Option<String>,
    /// When set (`"127.0.0.1:9601"`), `/metrics` is served only on this
    /// separate listener, not on the public port.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics_listen: Option<String>,
    /// Path prefix of pusher-js's HTTP fallback transports (`xhr_streaming`,
    /// `xhr_polling`; pusher-js's `httpPath`); empty turns them off.
    pub http_fallback_path: String,
    /// Serve the live dashboard at `/dashboard` (off by default).
    pub dashboard: bool,
    /// Operators' dashboard password (every app); without it only an app's
    /// key and secret open the dashboard, for that app.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dashboard_token: Option<String>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            host: "127.0.0.1".into(),
            port: 6001,
            shutdown_grace: 10,
            pong_timeout: 30,
            write_timeout: 10,
            max_message_bytes: 64 * 1024,
            outbox_limit: 1024,
            max_request_bytes: 1024 * 1024,
            log: "info".into(),
            echo_path: None,
            tls_cert: None,
            tls_key: None,
            tls_chain: None,
            api_cors: None,
            handshake_timeout: 10,
            max_header_bytes: 16 * 1024,
            max_connections_per_ip: 0,
            api_rate_per_ip: 0,
            metrics_token: None,
            metrics_listen: None,
            http_fallback_path: "/pusher".into(),
            dashboard: false,
            dashboard_token: None,
        }
    }
}

/// CORS answers of the HTTP API (`[server.api_cors]`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct ApiCors {
    /// `Access-Control-Allow-Origin` (an origin, or `*`).
    pub allow_origin: String,
    pub allow_methods: String,
    pub allow_headers: String,
}

/// Horizontal scaling (the `[cluster]` table).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// `local` (one node), or the broker several nodes share: `redis` (one
    /// Redis, or Sentinels with `redis+sentinel://`), `redis-cluster` (a
    /// Redis Cluster, sharded pub/sub) or `nats`.
    pub adapter: String,
    /// The cluster's Redis (`redis://...`), required with `adapter =
    /// "redis"`; with `redis-cluster`, a comma list of seed nodes.
    pub redis_url: Option<String>,
    /// The cluster's NATS (`nats://host:port`), required with `adapter =
    /// "nats"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nats_url: Option<String>,
    /// Prefix of the cluster's Redis channels and keys, so that several
    /// clusters can share one Redis.
    pub prefix: String,
    /// Seconds without a heartbeat after which a node counts as dead and its
    /// presence members are removed.
    pub node_timeout: u64,
    /// Milliseconds a cluster-wide query waits for the other nodes.
    pub query_timeout_ms: u64,
    /// How events cross nodes: `interest` (a node receives a channel's
    /// events only while it has subscribers for it) or `broadcast` (every
    /// event to every node over one broker channel).
    pub routing: String,
}

impl ClusterConfig {
    /// The broker's URL when the adapter is a cluster one (`None` for
    /// `local`).
    pub fn broker_url(&self) -> Option<&str> {
        match self.adapter.as_str() {
            "redis" | "redis-cluster" => self.redis_url.as_deref(),
            "nats" => self.nats_url.as_deref(),
            _ => None,
        }
    }
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            adapter: "local".into(),
            redis_url: None,
            nats_url: None,
            prefix: "resonance".into(),
            node_timeout: 10,
            query_timeout_ms: 2000,
            routing: "interest".into(),
        }
    }
}

/// The whole configuration.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub server: ServerConfig,
    #[serde(default)]
    pub cluster: ClusterConfig,
    #[serde(default)]
    pub apps: Vec<AppConfig>,
    /// `[[routes]]`: WebSocket routes whose events the app handles over HTTP.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<crate::custom::app_handlers::RouteConfig>,
    /// Apps also come from this database's `resonance_apps` table
    /// (`postgres://...` or `mysql://...`; `RESONANCE_APPS_DATABASE`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub apps_database: Option<String>,
    /// Seconds between two reads of the apps table (PostgreSQL is also
    /// told at once through LISTEN/NOTIFY).
    #[serde(default = "default_apps_database_poll")]
    pub apps_database_poll: u64,
}

fn default_apps_database_poll() -> u64 {
    2
}

impl Default for Config {
    fn default() -> Self {
        Config {
            server: ServerConfig::default(),
            cluster: ClusterConfig::default(),
            apps: vec![AppConfig::default()],
            routes: Vec::new(),
            apps_database: None,
            apps_database_poll: default_apps_database_poll(),
        }
    }
}

/// Command-line overrides (the common settings).
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub host: Option<String>,
    pub port: Option<u16>,
}

/// Where a setting comes from, for messages.
type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

impl Config {
    /// Loads defaults ← `file` ← environment ← `overrides`, then validates.
    pub fn load(
        file: Option<&Path>,
        env: Env<'_>,
        overrides: &Overrides,
    ) -> Result<Config, String> {
        let mut config = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("cannot read config file {}: {e}", path.display()))?;
                Config::from_toml(&text).map_err(|e| format!("{}: {e}", path.display()))?
            }
            None => Config::default(),
        };
        config.apply_env(env)?;
        if let Some(host) = &overrides.host {
            config.server.host = host.clone();
        }
        if let Some(port) = overrides.port {
            config.server.port = port;
        }
        config.validate()?;
        Ok(config)
    }

    pub fn from_toml(text: &str) -> Result<Config, String> {
        let config: Config = toml::from_str(text).map_err(|e| e.to_string())?;
        if config.apps.is_empty() && config.apps_database.is_none() {
            return Err("apps: at least one [[apps]] entry is needed".into());
        }
        Ok(config)
    }

    /// Applies `RESONANCE_*` variables; `RESONANCE_APP_*` set the first app.
    pub fn apply_env(&mut self, env: Env<'_>) -> Result<(), String> {
        let s = &mut self.server;
        set(env, "RESONANCE_HOST", &mut s.host)?;
        set(env, "RESONANCE_PORT", &mut s.port)?;
        set(env, "RESONANCE_SHUTDOWN_GRACE", &mut s.shutdown_grace)?;
        set(env, "RESONANCE_PONG_TIMEOUT", &mut s.pong_timeout)?;
        set(env, "RESONANCE_WRITE_TIMEOUT", &mut s.write_timeout)?;
        set(env, "RESONANCE_MAX_MESSAGE_BYTES", &mut s.max_message_bytes)?;
        set(env, "RESONANCE_OUTBOX_LIMIT", &mut s.outbox_limit)?;
        set(env, "RESONANCE_MAX_REQUEST_BYTES", &mut s.max_request_bytes)?;
        set(env, "RESONANCE_LOG", &mut s.log)?;
        set(env, "RESONANCE_HANDSHAKE_TIMEOUT", &mut s.handshake_timeout)?;
        set(env, "RESONANCE_MAX_HEADER_BYTES", &mut s.max_header_bytes)?;
        set(
            env,
            "RESONANCE_MAX_CONNECTIONS_PER_IP",
            &mut s.max_connections_per_ip,
        )?;
        set(env, "RESONANCE_API_RATE_PER_IP", &mut s.api_rate_per_ip)?;
        if let Some(path) = env("RESONANCE_HTTP_FALLBACK_PATH") {
            s.http_fallback_path = path;
        }
        if let Some(token) = env("RESONANCE_METRICS_TOKEN").filter(|v| !v.is_empty()) {
            s.metrics_token = Some(token);
        }
        if let Some(listen) = env("RESONANCE_METRICS_LISTEN").filter(|v| !v.is_empty()) {
            s.metrics_listen = Some(listen);
        }
        if let Some(on) = env("RESONANCE_DASHBOARD").filter(|v| !v.trim().is_empty()) {
            s.dashboard = match on.trim() {
                "1" | "true" => true,
                "0" | "false" => false,
                other => {
                    return Err(format!(
                        "RESONANCE_DASHBOARD: expected 1, 0, true or false, got {other:?}"
                    ));
                }
            };
        }
        if let Some(token) = env("RESONANCE_DASHBOARD_TOKEN").filter(|v| !v.is_empty()) {
            s.dashboard_token = Some(token);
        }
        if let Some(cert) = env("RESONANCE_TLS_CERT").filter(|v| !v.is_empty()) {
            s.tls_cert = Some(cert);
        }
        if let Some(key) = env("RESONANCE_TLS_KEY").filter(|v| !v.is_empty()) {
            s.tls_key = Some(key);
        }
        if let Some(chain) = env("RESONANCE_TLS_CHAIN").filter(|v| !v.is_empty()) {
            s.tls_chain = Some(chain);
        }
        if let Some(origin) = env("RESONANCE_API_CORS_ORIGIN").filter(|v| !v.is_empty()) {
            let cors = s.api_cors.get_or_insert_with(|| ApiCors {
                allow_origin: String::new(),
                allow_methods: "GET, POST, OPTIONS".into(),
                allow_headers: "Content-Type, Authorization, X-Requested-With".into(),
            });
            cors.allow_origin = origin;
            if let Some(methods) = env("RESONANCE_API_CORS_METHODS") {
                cors.allow_methods = methods;
            }
            if let Some(headers) = env("RESONANCE_API_CORS_HEADERS") {
                cors.allow_headers = headers;
            }
        }
        let c = &mut self.cluster;
        set(env, "RESONANCE_ADAPTER", &mut c.adapter)?;
        set(env, "RESONANCE_CLUSTER_PREFIX", &mut c.prefix)?;
        set(env, "RESONANCE_NODE_TIMEOUT", &mut c.node_timeout)?;
        set(env, "RESONANCE_QUERY_TIMEOUT", &mut c.query_timeout_ms)?;
        set(env, "RESONANCE_CLUSTER_ROUTING", &mut c.routing)?;
        if matches!(c.adapter.as_str(), "redis" | "redis-cluster") && c.redis_url.is_none() {
            c.redis_url = env("RESONANCE_REDIS_URL").filter(|u| !u.is_empty());
        }
        if let Some(url) = env("RESONANCE_NATS_URL").filter(|u| !u.is_empty()) {
            c.nats_url = Some(url);
        }
        if let Some(path) = env("RESONANCE_ECHO_PATH") {
            let path = path.trim();
            s.echo_path = (!path.is_empty()).then(|| path.to_string());
        }
        if let Some(url) = env("RESONANCE_APPS_DATABASE").filter(|v| !v.is_empty()) {
            self.apps_database = Some(url);
        }
        set(
            env,
            "RESONANCE_APPS_DATABASE_POLL",
            &mut self.apps_database_poll,
        )?;
        if self.apps_database.is_some()
            && self.apps.iter().all(|a| *a == AppConfig::default())
            && env("RESONANCE_APP_KEY").is_none()
        {
            // Apps come from the database: never serve the built-in
            // development app (its secret is public) beside them.
            self.apps.clear();
            return Ok(());
        }
        if self.apps.is_empty() {
            self.apps.push(AppConfig::default());
        }
        let a = &mut self.apps[0];
        set(env, "RESONANCE_APP_ID", &mut a.id)?;
        set(env, "RESONANCE_APP_KEY", &mut a.key)?;
        set(env, "RESONANCE_APP_SECRET", &mut a.secret)?;
        set(env, "RESONANCE_APP_CLIENT_EVENTS", &mut a.client_events)?;
        set(
            env,
            "RESONANCE_APP_CLIENT_EVENT_RATE",
            &mut a.client_event_rate,
        )?;
        set(env, "RESONANCE_APP_MAX_CONNECTIONS", &mut a.max_connections)?;
        set(env, "RESONANCE_APP_MAX_EVENT_BYTES", &mut a.max_event_bytes)?;
        set(
            env,
            "RESONANCE_APP_MAX_CHANNELS_PER_EVENT",
            &mut a.max_channels_per_event,
        )?;
        set(
            env,
            "RESONANCE_APP_MAX_EVENTS_PER_BATCH",
            &mut a.max_events_per_batch,
        )?;
        set(
            env,
            "RESONANCE_APP_MAX_PRESENCE_MEMBERS",
            &mut a.max_presence_members,
        )?;
        set(
            env,
            "RESONANCE_APP_MAX_PRESENCE_MEMBER_BYTES",
            &mut a.max_presence_member_bytes,
        )?;
        set(
            env,
            "RESONANCE_APP_ACTIVITY_TIMEOUT",
            &mut a.activity_timeout,
        )?;
        set(
            env,
            "RESONANCE_APP_SUBSCRIPTION_COUNT",
            &mut a.subscription_count_events,
        )?;
        if let Some(url) = env("RESONANCE_REDIS_URL").filter(|u| !u.is_empty()) {
            a.redis_url = Some(url);
        }
        set(env, "RESONANCE_REDIS_PREFIX", &mut a.redis_prefix)?;
        if let Some(url) = env("RESONANCE_AUTH_ENDPOINT").filter(|u| !u.is_empty()) {
            a.auth_endpoint = Some(url);
        }
        set(env, "RESONANCE_AUTH_TIMEOUT", &mut a.auth_timeout)?;
        set(
            env,
            "RESONANCE_APP_MAX_SUBSCRIPTIONS",
            &mut a.max_subscriptions_per_connection,
        )?;
        set(env, "RESONANCE_APP_MAX_API_RATE", &mut a.max_api_rate)?;
        set(
            env,
            "RESONANCE_APP_REDIS_MAX_EVENT_BYTES",
            &mut a.redis_max_event_bytes,
        )?;
        set(
            env,
            "RESONANCE_APP_ECHO_API_MAX_EVENT_BYTES",
            &mut a.echo_api_max_event_bytes,
        )?;
        set(env, "RESONANCE_SOCKETIO", &mut a.socketio)?;
        if let Some(keys) = env("RESONANCE_APP_EXTRA_API_KEYS") {
            a.extra_api_keys = keys
                .split(',')
                .map(|k| k.trim().to_string())
                .filter(|k| !k.is_empty())
                .collect();
        }
        if let Some(url) = env("RESONANCE_APP_WEBHOOK_URL").filter(|u| !u.is_empty()) {
            let event_types = env("RESONANCE_APP_WEBHOOK_EVENTS")
                .unwrap_or_default()
                .split(',')
                .map(|t| t.trim().to_string())
                .filter(|t| !t.is_empty())
                .collect();
            a.webhooks = vec![crate::core::webhook_target::WebhookTarget {
                url,
                event_types,
                ..Default::default()
            }];
        }
        if let Some(origins) = env("RESONANCE_APP_ALLOWED_ORIGINS") {
            a.allowed_origins = origins
                .split(',')
                .map(|o| o.trim().to_string())
                .filter(|o| !o.is_empty())
                .collect();
        }
        Ok(())
    }

    pub fn validate(&self) -> Result<(), String> {
        let s = &self.server;
        if s.host.parse::<std::net::IpAddr>().is_err() && s.host != "localhost" {
            return Err(format!("server.host: {:?} is not an IP address", s.host));
        }
        if s.outbox_limit == 0 {
            return Err("server.outbox_limit: must be at least 1".into());
        }
        if s.max_message_bytes < 1024 {
            return Err("server.max_message_bytes: must be at least 1024".into());
        }
        if s.pong_timeout == 0 || s.write_timeout == 0 {
            return Err(
                "server.pong_timeout and server.write_timeout: must be at least 1 second".into(),
            );
        }
        if s.handshake_timeout == 0 {
            return Err("server.handshake_timeout: must be at least 1 second".into());
        }
        let fallback = &s.http_fallback_path;
        if !fallback.is_empty()
            && (!fallback.starts_with('/') || fallback.ends_with('/') || fallback.contains("/app/"))
        {
            return Err(format!(
                "server.http_fallback_path: {fallback:?} must start with / and not end with / (e.g. \"/pusher\"), or be empty to turn the HTTP fallback off"
            ));
        }
        if s.max_header_bytes < 8192 {
            return Err("server.max_header_bytes: must be at least 8192".into());
        }
        if let Some(listen) = &s.metrics_listen
            && listen.parse::<std::net::SocketAddr>().is_err()
        {
            return Err(format!(
                "server.metrics_listen: {listen:?} is not an address such as \"127.0.0.1:9601\""
            ));
        }
        if let Some(token) = &s.dashboard_token
            && token.trim().len() < 16
        {
            return Err(
                "server.dashboard_token: must be at least 16 characters (openssl rand -hex 16)"
                    .into(),
            );
        }
        if s.tls_cert.is_some() != s.tls_key.is_some() {
            return Err(
                "server.tls_cert and server.tls_key: give both (PEM files) or neither".into(),
            );
        }
        let c = &self.cluster;
        let redis_scheme = |u: &str| u.starts_with("redis://") || u.starts_with("rediss://");
        match c.adapter.as_str() {
            "local" => {}
            "redis"
                if c.redis_url.as_deref().is_some_and(|u| {
                    redis_scheme(u) || u.starts_with("redis+sentinel://") && u[17..].contains('/')
                }) => {}
            "redis" => return Err(
                "cluster.redis_url: adapter \"redis\" needs a redis:// URL, or redis+sentinel://host:port,host:port/service (RESONANCE_REDIS_URL)"
                    .into(),
            ),
            "redis-cluster"
                if c.redis_url.as_deref().is_some_and(|u| {
                    let seeds = crate::adapter::broker::url_list(u);
                    !seeds.is_empty() && seeds.iter().all(|s| redis_scheme(s))
                }) => {}
            "redis-cluster" => return Err(
                "cluster.redis_url: adapter \"redis-cluster\" needs seed nodes, redis://host:port,redis://host:port (RESONANCE_REDIS_URL)"
                    .into(),
            ),
            "nats"
                if c.nats_url.as_deref().is_some_and(|u| {
                    crate::adapter::broker::url_list(u)
                        .iter()
                        .all(|s| s.starts_with("nats://") || s.starts_with("tls://"))
                }) => {}
            "nats" => {
                return Err(
                    "cluster.nats_url: adapter \"nats\" needs a nats://host:port URL (RESONANCE_NATS_URL)"
                        .into(),
                );
            }
            other => {
                return Err(format!(
                    "cluster.adapter: {other:?} is not an adapter; use \"local\", \"redis\", \"redis-cluster\" or \"nats\""
                ));
            }
        }
        if c.prefix.is_empty() || c.prefix.contains(['*', '?', '[']) {
            return Err("cluster.prefix: must be non-empty and free of * ? [".into());
        }
        if c.node_timeout < 2 {
            return Err("cluster.node_timeout: must be at least 2 seconds".into());
        }
        if !matches!(c.routing.as_str(), "interest" | "broadcast") {
            return Err(format!(
                "cluster.routing: {:?} is not a routing; use \"interest\" or \"broadcast\"",
                c.routing
            ));
        }
        if let Some(path) = &s.echo_path
            && (!path.starts_with('/') || path.starts_with("/app/"))
        {
            return Err(format!(
                "server.echo_path: {path:?} must start with '/' and not be under /app/"
            ));
        }
        for (i, route) in self.routes.iter().enumerate() {
            route.validate(&format!("routes[{i}]"), &self.apps)?;
        }
        if let Some(url) = &self.apps_database
            && !crate::apps::db::is_database_url(url)
        {
            return Err(
                "apps_database: must be a postgres://, postgresql://, mysql:// or mariadb:// URL"
                    .into(),
            );
        }
        if self.apps_database_poll == 0 {
            return Err("apps_database_poll: must be at least 1 second".into());
        }
        let (mut ids, mut keys) = (HashSet::new(), HashSet::new());
        for (i, app) in self.apps.iter().enumerate() {
            let at = format!("apps[{i}]");
            app.validate(&at)?;
            if !ids.insert(&app.id) {
                return Err(format!("{at}.id: {:?} is used by another app", app.id));
            }
            if !keys.insert(&app.key) {
                return Err(format!("{at}.key: {:?} is used by another app", app.key));
            }
        }
        Ok(())
    }
}

/// Parses the variable `name` into `target` when it is set.
fn set<T: std::str::FromStr>(env: Env<'_>, name: &str, target: &mut T) -> Result<(), String> {
    let Some(value) = env(name) else {
        return Ok(());
    };
    let value = value.trim();
    *target = value.parse().map_err(|_| {
        let expected = std::any::type_name::<T>()
            .rsplit("::")
            .next()
            .unwrap_or("value");
        let expected = match expected {
            "bool" => "true or false",
            "String" => "text",
            _ => "a non-negative whole number",
        };
        format!("{name}: expected {expected}, got {value:?}")
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn defaults_are_valid() {
        let c = Config::load(None, &env_of(&[]), &Overrides::default()).unwrap();
        assert_eq!(c.server.port, 6001);
        assert_eq!(c.apps.len(), 1);
        assert!(c.apps[0].client_events);
    }

    #[test]
    fn env_overrides_default_app() {
        let env = env_of(&[
            ("RESONANCE_PORT", "7000"),
            ("RESONANCE_APP_ID", "42"),
            ("RESONANCE_APP_CLIENT_EVENTS", "false"),
            (
                "RESONANCE_APP_ALLOWED_ORIGINS",
                "https://a.example, https://*.b.example",
            ),
        ]);
        let c = Config::load(None, &env, &Overrides::default()).unwrap();
        assert_eq!(c.server.port, 7000);
        assert_eq!(c.server.echo_path, None);
        assert_eq!(c.apps[0].id, "42");
        assert!(!c.apps[0].client_events);
        assert_eq!(
            c.apps[0].allowed_origins,
            vec!["https://a.example", "https://*.b.example"]
        );
    }

    #[test]
    fn echo_path_from_env_is_checked() {
        let env = env_of(&[("RESONANCE_ECHO_PATH", "/echo")]);
        let c = Config::load(None, &env, &Overrides::default()).unwrap();
        assert_eq!(c.server.echo_path.as_deref(), Some("/echo"));
        let env = env_of(&[("RESONANCE_ECHO_PATH", "echo")]);
        let err = Config::load(None, &env, &Overrides::default()).unwrap_err();
        assert!(err.starts_with("server.echo_path:"), "{err}");
    }

    #[test]
    fn bad_env_names_the_variable() {
        let err = Config::load(
            None,
            &env_of(&[("RESONANCE_PORT", "abc")]),
            &Overrides::default(),
        )
        .unwrap_err();
        assert!(err.starts_with("RESONANCE_PORT:"), "{err}");
        let err = Config::load(
            None,
            &env_of(&[("RESONANCE_APP_CLIENT_EVENTS", "yes")]),
            &Overrides::default(),
        )
        .unwrap_err();
        assert!(err.contains("true or false"), "{err}");
    }

    #[test]
    fn toml_apps_and_errors() {
        let c = Config::from_toml(
            r#"
            [server]
            port = 6002
            [[apps]]
            id = "1"
            key = "k1"
            secret = "secret-one"
            [[apps]]
            id = "2"
            key = "k2"
            secret = "secret-two"
            client_events = false
            "#,
        )
        .unwrap();
        c.validate().unwrap();
        assert_eq!(
            c.apps[1].max_event_bytes, 10240,
            "unset options keep their defaults"
        );
        assert!(!c.apps[1].client_events);

        let err = Config::from_toml("[server]\nport = \"x\"\n[[apps]]\nid=\"1\"").unwrap_err();
        assert!(err.contains("port"), "{err}");
        let err = Config::from_toml("[[apps]]\nid = \"1\"\nclient_evnts = true").unwrap_err();
        assert!(err.contains("client_evnts"), "{err}");
        let dup = Config::from_toml("[[apps]]\nid=\"1\"\nkey=\"a\"\n[[apps]]\nid=\"1\"\nkey=\"b\"")
            .unwrap();
        assert!(dup.validate().unwrap_err().starts_with("apps[1].id"));
    }
}
