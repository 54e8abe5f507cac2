//! `resonance start --echo-config laravel-echo-server.json`: run with a
//! laravel-echo-server configuration as it is, so a team can swap servers
//! without touching the Laravel app or the front end.
//!
//! Every setting that maps onto Resonance is taken; the ones that do not
//! are returned as warnings, printed at start, so nothing is ignored
//! silently.

use serde::Deserialize;
use serde_json::Value;

use crate::config::Config;
use crate::core::app::AppConfig;

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct EchoFile {
    auth_host: Option<String>,
    auth_endpoint: Option<String>,
    clients: Vec<EchoClient>,
    database: Option<String>,
    database_config: Option<Value>,
    dev_mode: bool,
    host: Option<String>,
    port: Option<Value>,
    protocol: Option<String>,
    ssl_cert_path: Option<String>,
    ssl_key_path: Option<String>,
    ssl_cert_chain_path: Option<String>,
    ssl_passphrase: Option<String>,
    subscribers: Option<Value>,
    api_origin_allow: Option<Value>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct EchoClient {
    app_id: String,
    key: String,
}

/// Builds a configuration from a laravel-echo-server file and its
/// `LARAVEL_ECHO_SERVER_*` environment overrides. Returns the config and
/// the warnings about settings that cannot be honoured.
pub fn load(
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(Config, Vec<String>), String> {
    let file: EchoFile =
        serde_json::from_str(text).map_err(|e| format!("not a laravel-echo-server.json: {e}"))?;
    let mut warnings = Vec::new();
    let mut config = Config::default();
    let over = |name: &str| env(&format!("LARAVEL_ECHO_SERVER_{name}")).filter(|v| !v.is_empty());

    // Listening address: laravel-echo-server listens everywhere when host is null.
    config.server.host = over("HOST")
        .or(file.host)
        .unwrap_or_else(|| "0.0.0.0".into());
    let port = over("PORT").or_else(|| {
        file.port.map(|p| match p {
            Value::String(s) => s,
            other => other.to_string(),
        })
    });
    if let Some(port) = port {
        config.server.port = port
            .parse()
            .map_err(|_| format!("port: {port:?} is not a port number"))?;
    }
    if file.dev_mode || over("DEBUG").is_some_and(|v| v == "true") {
        config.server.log = "debug".into();
    }

    let mut app = AppConfig::default();
    match file.clients.first() {
        Some(client) => app.id = client.app_id.clone(),
        None => warnings.push(
            "clients is empty: the laravel-echo-server API (Bearer / auth_key) is off; add a client or set RESONANCE_APP_EXTRA_API_KEYS".into(),
        ),
    }
    // Every `clients` key is an API key, as in laravel-echo-server: they
    // are secret (the app's server holds them), so they never double as the
    // Pusher key, which every browser bundle carries. Socket.IO clients
    // send no key, so the app gets its own (RESONANCE_APP_KEY to choose it).
    app.extra_api_keys = file.clients.into_iter().map(|c| c.key).collect();
    // laravel-echo-server has no secret; the Pusher-signed API then needs
    // RESONANCE_APP_SECRET (the Bearer-key API works without).
    let (_, key, secret) = crate::init::generate_credentials();
    app.key = key;
    app.secret = secret;

    let auth_host = over("AUTH_HOST")
        .or(file.auth_host)
        .unwrap_or_else(|| "http://localhost".into());
    let auth_path = file
        .auth_endpoint
        .unwrap_or_else(|| "/broadcasting/auth".into());
    app.auth_endpoint = Some(format!("{}{}", auth_host.trim_end_matches('/'), auth_path));

    let redis_subscriber = file
        .subscribers
        .as_ref()
        .and_then(|s| s.get("redis"))
        .and_then(Value::as_bool)
        .unwrap_or(true);
    let redis = file
        .database_config
        .as_ref()
        .and_then(|d| d.get("redis"))
        .cloned()
        .unwrap_or(Value::Null);
    if file.database.as_deref().is_some_and(|d| d != "redis") {
        warnings.push(format!(
            "database {:?}: presence state is kept in memory (and in Redis with the cluster adapter), not in {0:?}",
            file.database.unwrap_or_default()
        ));
    }
    if redis_subscriber {
        let text =
            |v: Option<&Value>| v.map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string));
        let host = over("REDIS_HOST")
            .or_else(|| text(redis.get("host")))
            .unwrap_or_else(|| "127.0.0.1".into());
        let port = over("REDIS_PORT")
            .or_else(|| text(redis.get("port")))
            .unwrap_or_else(|| "6379".into());
        let password = over("REDIS_PASSWORD").or_else(|| text(redis.get("password")));
        let db = text(redis.get("db")).unwrap_or_else(|| "0".into());
        let auth = password
            .map(|p| {
                format!(
                    ":{}@",
                    percent_encoding::utf8_percent_encode(&p, percent_encoding::NON_ALPHANUMERIC)
                )
            })
            .unwrap_or_default();
        app.redis_url = Some(format!("redis://{auth}{host}:{port}/{db}"));
        app.redis_prefix = text(redis.get("keyPrefix")).unwrap_or_default();
        for unsupported in ["sentinels", "tls", "family", "path"] {
            if redis.get(unsupported).is_some() {
                warnings.push(format!("databaseConfig.redis.{unsupported} is not supported; use redis_url in a Resonance config"));
            }
        }
    }

    let protocol = over("PROTO")
        .or(file.protocol)
        .unwrap_or_else(|| "http".into());
    let cert = over("SSL_CERT")
        .or(file.ssl_cert_path)
        .filter(|s| !s.is_empty());
    let key = over("SSL_KEY")
        .or(file.ssl_key_path)
        .filter(|s| !s.is_empty());
    let chain = over("SSL_CHAIN")
        .or(file.ssl_cert_chain_path)
        .filter(|s| !s.is_empty());
    if protocol == "https" {
        match (cert, key) {
            (Some(cert), Some(key)) => {
                config.server.tls_cert = Some(cert);
                config.server.tls_key = Some(key);
                config.server.tls_chain = chain;
            }
            _ => return Err("protocol \"https\" needs sslCertPath and sslKeyPath".into()),
        }
        if over("SSL_PASS")
            .or(file.ssl_passphrase)
            .is_some_and(|p| !p.is_empty())
        {
            warnings.push("sslPassphrase: encrypted keys are not supported; decrypt the key file (openssl pkey -in key.pem -out plain.pem)".into());
        }
    }
    if let Some(allow) = file.api_origin_allow.as_ref()
        && allow
            .get("allowCors")
            .and_then(Value::as_bool)
            .unwrap_or(false)
    {
        let text = |k: &str| {
            allow
                .get(k)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        config.server.api_cors = Some(crate::config::ApiCors {
            allow_origin: text("allowOrigin"),
            allow_methods: text("allowMethods"),
            allow_headers: text("allowHeaders"),
        });
    }
    config.apps = vec![app];
    config.apply_env(&|name| env(name))?;
    config.validate()?;
    Ok((config, warnings))
}

#[cfg(test)]
mod tests {
    use super::*;

    const INIT_OUTPUT: &str = r#"{"authHost":"http://localhost","authEndpoint":"/broadcasting/auth","clients":[{"appId":"a1b2c3d4e5f6a7b8","key":"0123456789abcdef0123456789abcdef"}],
 "database":"redis","databaseConfig":{"redis":{"port":"6380","password":"p@ss","keyPrefix":"laravel_database_"},"sqlite":{"databasePath":"/database/laravel-echo-server.sqlite"}},
 "devMode":true,"host":null,"port":"6001","protocol":"https","socketio":{},
 "sslCertPath":"/x.pem","sslKeyPath":"/k.pem","sslCertChainPath":"","sslPassphrase":"",
 "subscribers":{"http":true,"redis":true},
 "apiOriginAllow":{"allowCors":false,"allowOrigin":"","allowMethods":"","allowHeaders":""}}"#;

    #[test]
    fn maps_an_init_file() {
        let (config, warnings) = load(INIT_OUTPUT, &|_| None).unwrap();
        let app = &config.apps[0];
        assert_eq!(app.id, "a1b2c3d4e5f6a7b8");
        assert_eq!(app.extra_api_keys, ["0123456789abcdef0123456789abcdef"]);
        assert_ne!(app.key, "0123456789abcdef0123456789abcdef");
        assert_eq!(
            app.auth_endpoint.as_deref(),
            Some("http://localhost/broadcasting/auth")
        );
        assert_eq!(
            app.redis_url.as_deref(),
            Some("redis://:p%40ss@127.0.0.1:6380/0")
        );
        assert_eq!(app.redis_prefix, "laravel_database_");
        assert_eq!(config.server.host, "0.0.0.0");
        assert_eq!(config.server.port, 6001);
        assert_eq!(config.server.log, "debug");
        assert_eq!(config.server.tls_cert.as_deref(), Some("/x.pem"));
        assert!(warnings.is_empty(), "{warnings:?}");
    }

    #[test]
    fn environment_overrides() {
        let env = |k: &str| match k {
            "LARAVEL_ECHO_SERVER_PORT" => Some("7001".to_string()),
            "LARAVEL_ECHO_SERVER_REDIS_HOST" => Some("10.0.0.5".to_string()),
            "LARAVEL_ECHO_SERVER_AUTH_HOST" => Some("http://app.test".to_string()),
            _ => None,
        };
        let (config, _) = load(INIT_OUTPUT, &env).unwrap();
        assert_eq!(config.server.port, 7001);
        assert!(
            config.apps[0]
                .redis_url
                .as_deref()
                .unwrap()
                .contains("10.0.0.5:6380")
        );
        assert_eq!(
            config.apps[0].auth_endpoint.as_deref(),
            Some("http://app.test/broadcasting/auth")
        );
    }

    #[test]
    fn every_client_key_is_a_secret_api_key() {
        let two = INIT_OUTPUT.replace(
            r#"}],"#,
            r#"},{"appId":"x","key":"fedcba9876543210fedcba9876543210"}],"#,
        );
        let (config, _) = load(&two, &|_| None).unwrap();
        let app = &config.apps[0];
        assert_eq!(app.id, "a1b2c3d4e5f6a7b8");
        assert_eq!(app.extra_api_keys.len(), 2);
        assert!(!app.extra_api_keys.contains(&app.key));
        let env = |k: &str| (k == "RESONANCE_APP_KEY").then(|| "browser-key".to_string());
        assert_eq!(
            load(INIT_OUTPUT, &env).unwrap().0.apps[0].key,
            "browser-key"
        );
        let short = INIT_OUTPUT.replace("0123456789abcdef0123456789abcdef", "abc");
        let err = load(&short, &|_| None).err().unwrap();
        assert!(err.contains("extra_api_keys[0]"), "{err}");
    }

    #[test]
    fn refuses_garbage() {
        assert!(load("{not json", &|_| None).is_err());
        assert!(load(r#"{"port":"abc"}"#, &|_| None).is_err());
    }
}
