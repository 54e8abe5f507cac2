//! The live app registry on a real server: a reload adds, changes, removes
//! and disables apps; connections of deleted apps are closed with 4001, of
//! disabled apps with 4003, those of untouched apps stay; a changed limit
//! applies to new connections; a broken config is refused with the key at
//! fault and changes nothing.

mod common;

use common::*;
use resonance::config::Config;
use resonance::core::app::AppConfig;
use resonance::server::Server;

fn app(id: &str) -> AppConfig {
    AppConfig {
        id: id.into(),
        key: format!("key-{id}"),
        secret: format!("secret-of-{id}"),
        ..AppConfig::default()
    }
}

/// Reads messages until the close frame; returns the pusher:error code
/// seen before it and the close code.
async fn closed_with(client: &mut Client) -> (Option<u64>, Option<u16>) {
    let mut error = None;
    loop {
        let Some(m) = next(client).await else {
            return (error, None);
        };
        if let Some((code, _)) = m.as_close() {
            return (error, Some(u16::from(code)));
        }
        if let Some(text) = m.as_text() {
            let v: serde_json::Value = serde_json::from_str(text).expect("json");
            if v["event"] == "pusher:error" {
                // `data` is a JSON string, as Pusher sends it.
                let data: serde_json::Value = match &v["data"] {
                    serde_json::Value::String(s) => serde_json::from_str(s).expect("data"),
                    other => other.clone(),
                };
                error = data["code"].as_u64();
            }
        }
    }
}

async fn established(addr: std::net::SocketAddr, key: &str) -> Client {
    let mut client = connect(addr, &format!("/app/{key}?protocol=7")).await;
    let first = next_text(&mut client).await;
    assert!(
        first.contains("pusher:connection_established"),
        "{key}: {first}"
    );
    client
}

async fn refused(addr: std::net::SocketAddr, key: &str) -> (Option<u64>, Option<u16>) {
    let mut client = connect(addr, &format!("/app/{key}?protocol=7")).await;
    closed_with(&mut client).await
}

#[tokio::test]
async fn reload_adds_changes_removes_and_disables_apps() {
    let mut config = common::config();
    config.apps = vec![app("1"), app("2"), app("3")];
    let server = Server::bind(config.clone()).await.expect("bind");
    let control = server.control().clone();
    let running = start_server(server).await;
    let addr = running.addr;

    let mut kept = established(addr, "key-1").await;
    let mut deleted = established(addr, "key-2").await;
    let mut disabled = established(addr, "key-3").await;
    send_text(
        &mut kept,
        r#"{"event":"pusher:subscribe","data":{"channel":"news"}}"#,
    )
    .await;
    assert!(
        next_text(&mut kept)
            .await
            .contains("subscription_succeeded")
    );

    let mut next_config = config.clone();
    let mut changed = app("1");
    changed.max_connections = 1;
    let mut off = app("3");
    off.enabled = false;
    next_config.apps = vec![changed, off, app("4")];
    let report = control.reload(next_config).await.expect("reload");
    assert!(report.apps.contains("added [4]"), "{report}");
    assert!(report.apps.contains("removed [2]"), "{report}");

    assert_eq!(closed_with(&mut deleted).await, (Some(4001), Some(4001)));
    assert_eq!(closed_with(&mut disabled).await, (Some(4003), Some(4003)));
    // New connections: the added app connects, the others are refused.
    let _added = established(addr, "key-4").await;
    assert_eq!(refused(addr, "key-2").await, (Some(4001), Some(4001)));
    assert_eq!(refused(addr, "key-3").await, (Some(4003), Some(4003)));
    // App 1's new limit (one connection) applies to the next connection,
    // while its open connection stays subscribed and gets events.
    assert_eq!(refused(addr, "key-1").await, (Some(4004), Some(4004)));
    let (status, _) = signed_trigger(addr, "1", "key-1", "secret-of-1", "news").await;
    assert_eq!(status, 200);
    let event = next_text(&mut kept).await;
    assert!(event.contains("\"event\":\"e\""), "{event}");
    // The API of a disabled app answers 403, of a deleted one 404.
    assert_eq!(
        signed_trigger(addr, "3", "key-3", "secret-of-3", "x")
            .await
            .0,
        403
    );
    assert_eq!(
        signed_trigger(addr, "2", "key-2", "secret-of-2", "x")
            .await
            .0,
        404
    );
    running.shutdown().await;
}

#[tokio::test]
async fn a_broken_config_is_refused_with_its_key_and_changes_nothing() {
    let mut config = common::config();
    config.apps = vec![app("1")];
    let server = Server::bind(config.clone()).await.expect("bind");
    let control = server.control().clone();
    let running = start_server(server).await;
    let mut kept = established(running.addr, "key-1").await;

    let mut broken = config.clone();
    let mut bad = app("2");
    bad.secret = "short".into();
    broken.apps = vec![app("1"), bad];
    let err = control.reload(broken).await.expect_err("refused");
    assert!(err.starts_with("apps[1].secret"), "{err}");
    let mut bad_log = config.clone();
    bad_log.server.log = "resonance=loud".into();
    let err = control.reload(bad_log).await.expect_err("refused");
    assert!(err.starts_with("server.log"), "{err}");
    // Nothing changed: app 2 does not exist, app 1's connection is alive.
    assert_eq!(
        refused(running.addr, "key-2").await,
        (Some(4001), Some(4001))
    );
    send_text(&mut kept, r#"{"event":"pusher:ping","data":{}}"#).await;
    assert!(next_text(&mut kept).await.contains("pusher:pong"));

    // A port change is reported as needing a restart, not applied.
    let mut moved = config.clone();
    moved.server.port = 1;
    let report = control.reload(moved).await.expect("reload");
    assert_eq!(report.needs_restart, vec!["server.port".to_string()]);
    assert_eq!(control.config().server.port, 1, "the file's view is kept");
    running.shutdown().await;
}

#[test]
fn the_apps_database_replaces_the_development_app() {
    let env = |name: &str| match name {
        "RESONANCE_APPS_DATABASE" => Some("postgres://127.0.0.1/db".to_string()),
        _ => None,
    };
    let c = Config::load(None, &env, &Default::default()).expect("config");
    assert!(
        c.apps.is_empty(),
        "the public development app is not served"
    );
    let env = |name: &str| match name {
        "RESONANCE_APPS_DATABASE" => Some("sqlite://x".to_string()),
        _ => None,
    };
    let err = Config::load(None, &env, &Default::default()).expect_err("refused");
    assert!(err.starts_with("apps_database:"), "{err}");
}

/// A signed trigger of event `e` on `channel` for app `id`.
async fn signed_trigger(
    addr: std::net::SocketAddr,
    id: &str,
    key: &str,
    secret: &str,
    channel: &str,
) -> (u16, String) {
    let body = serde_json::json!({ "name": "e", "channels": [channel], "data": "{}" }).to_string();
    let path = format!("/apps/{id}/events");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let query = format!(
        "auth_key={key}&auth_timestamp={now}&auth_version=1.0&body_md5={}",
        resonance::signing::md5_hex(body.as_bytes())
    );
    let signature =
        resonance::signing::hmac_sha256_hex(secret, format!("POST\n{path}\n{query}").as_bytes());
    http(
        addr,
        &format!(
            "POST {path}?{query}&auth_signature={signature} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    )
    .await
}
