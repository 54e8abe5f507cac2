//! The live dashboard (`/dashboard`) against a real server: off by default,
//! who may log in and what each login sees, cookie tampering, CSRF and
//! Origin checks on the test-event form and the live socket, the figures
//! (connections, channels, presence members) and the live socket's pushes,
//! and a test event reaching a Pusher client.

mod common;
mod signed;

use std::net::SocketAddr;

use common::*;
use hyper::header::{HeaderName, HeaderValue};
use resonance::core::app::AppConfig;
use resonance::server::Server;
use serde_json::{Value, json};
use signed::*;

const TOKEN: &str = "operators-token-0123456789";

fn dashboard_config() -> resonance::config::Config {
    let mut c = config();
    c.server.dashboard = true;
    c.server.dashboard_token = Some(TOKEN.into());
    c.apps.push(AppConfig {
        id: "200000".into(),
        key: "second-key".into(),
        secret: "second-secret".into(),
        ..AppConfig::default()
    });
    c
}

fn body(text: &str) -> Value {
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// A request with extra header lines (each ending in \r\n) and a body.
async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &str,
    body: &str,
) -> (u16, String) {
    http(
        addr,
        &format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{headers}Content-Length: {}\r\n\r\n{body}",
            body.len()
        ),
    )
    .await
}

/// Logs in with a JSON body; returns the cookie pair and the CSRF token.
async fn login(addr: SocketAddr, credentials: Value) -> (String, String) {
    let (status, text) = request(
        addr,
        "POST",
        "/dashboard/login",
        "Content-Type: application/json\r\n",
        &credentials.to_string(),
    )
    .await;
    assert_eq!(status, 200, "{text}");
    let cookie = text
        .lines()
        .find_map(|l| l.strip_prefix("set-cookie: "))
        .expect("a session cookie");
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    assert!(cookie.contains("SameSite=Strict"), "{cookie}");
    assert!(cookie.contains("Path=/dashboard"), "{cookie}");
    let pair = cookie.split(';').next().unwrap().to_string();
    let csrf = body(&text)["csrf"].as_str().expect("csrf").to_string();
    (pair, csrf)
}

async fn snapshot(addr: SocketAddr, app: &str, cookie: &str) -> (u16, String) {
    request(
        addr,
        "GET",
        &format!("/dashboard/snapshot?app={app}"),
        &format!("Cookie: {cookie}\r\n"),
        "",
    )
    .await
}

/// Opens the live socket with the given extra headers.
async fn live(
    addr: SocketAddr,
    app: &str,
    headers: &[(&'static str, String)],
) -> Result<Client, tokio_websockets::Error> {
    let mut builder = tokio_websockets::ClientBuilder::new()
        .uri(&format!("ws://{addr}/dashboard/live?app={app}"))
        .expect("uri");
    for (name, value) in headers {
        builder = builder
            .add_header(
                HeaderName::from_static(name),
                HeaderValue::from_str(value).unwrap(),
            )
            .expect("header");
    }
    builder.connect().await.map(|(c, _)| c)
}

/// The next live message of `kind`, skipping others.
async fn next_of(client: &mut Client, kind: &str) -> Value {
    for _ in 0..30 {
        let v: Value = serde_json::from_str(&next_text(client).await).expect("JSON");
        if v["type"] == kind {
            return v;
        }
    }
    panic!("no {kind} message within 30");
}

async fn pusher(addr: SocketAddr, key: &str) -> (Client, String) {
    let mut c = connect(addr, &format!("/app/{key}?protocol=7")).await;
    let v: Value = serde_json::from_str(&next_text(&mut c).await).unwrap();
    assert_eq!(v["event"], "pusher:connection_established", "{v}");
    let data: Value = serde_json::from_str(v["data"].as_str().unwrap()).unwrap();
    (c, data["socket_id"].as_str().unwrap().to_string())
}

/// Subscribes and waits for the confirmation.
async fn subscribe(
    c: &mut Client,
    channel: &str,
    auth: Option<String>,
    channel_data: Option<&str>,
) {
    let mut data = json!({ "channel": channel });
    if let Some(auth) = auth {
        data["auth"] = auth.into();
    }
    if let Some(cd) = channel_data {
        data["channel_data"] = cd.into();
    }
    send_text(
        c,
        &json!({ "event": "pusher:subscribe", "data": data }).to_string(),
    )
    .await;
    loop {
        let v: Value = serde_json::from_str(&next_text(c).await).unwrap();
        if v["event"] == "pusher_internal:subscription_succeeded" {
            assert_eq!(v["channel"], channel);
            return;
        }
        assert_ne!(v["event"], "pusher:subscription_error", "{v}");
    }
}

#[tokio::test]
async fn off_unless_enabled() {
    let mut c = config();
    c.server.dashboard_token = Some(TOKEN.into());
    let server = start(Server::builder(c)).await;
    for path in ["/dashboard", "/dashboard/snapshot", "/dashboard/app.js"] {
        let (status, text) = get(server.addr, path).await;
        assert_eq!(status, 404, "{path}: {text}");
    }
    let (status, _) = request(
        server.addr,
        "POST",
        "/dashboard/login",
        "Content-Type: application/json\r\n",
        &json!({ "token": TOKEN }).to_string(),
    )
    .await;
    assert_eq!(status, 404);
    server.shutdown().await;
}

#[tokio::test]
async fn logins_are_scoped_and_cookies_cannot_be_forged() {
    let server = start(Server::builder(dashboard_config())).await;
    let addr = server.addr;
    // The page itself carries no data, with a strict CSP.
    let (status, page) = get(addr, "/dashboard").await;
    assert_eq!(status, 200);
    assert!(
        page.contains("content-security-policy: default-src 'none'"),
        "{page}"
    );
    assert!(page.contains("<script src=\"/dashboard/app.js\""), "{page}");
    // No data without a login.
    let (status, _) = get(addr, "/dashboard/snapshot").await;
    assert_eq!(status, 401);
    let (status, _) = get(addr, "/dashboard/session").await;
    assert_eq!(status, 401);
    // The public key alone, a wrong secret, another app's secret: refused.
    for creds in [
        json!({ "key": "resonance-key" }),
        json!({ "key": "resonance-key", "secret": "" }),
        json!({ "key": "resonance-key", "secret": "wrong" }),
        json!({ "key": "resonance-key", "secret": "second-secret" }),
        json!({ "token": "operators-token" }),
        json!({ "key": "nope", "secret": "resonance-secret" }),
    ] {
        let (status, text) = request(
            addr,
            "POST",
            "/dashboard/login",
            "Content-Type: application/json\r\n",
            &creds.to_string(),
        )
        .await;
        assert_eq!(status, 401, "{creds}: {text}");
        assert!(!text.contains("set-cookie"), "{text}");
    }
    // Credentials in the URL are not read (they would land in access logs).
    let (status, _) = request(
        addr,
        "POST",
        "/dashboard/login?key=resonance-key&secret=resonance-secret",
        "",
        "",
    )
    .await;
    assert_eq!(status, 401);
    // A login from a page on another site is refused.
    let (status, _) = request(
        addr,
        "POST",
        "/dashboard/login",
        "Content-Type: application/x-www-form-urlencoded\r\nOrigin: https://evil.example\r\n",
        "key=resonance-key&secret=resonance-secret",
    )
    .await;
    assert_eq!(status, 403);

    // An app's key and secret (here as a form) open that app only.
    let (status, text) = request(
        addr,
        "POST",
        "/dashboard/login",
        "Content-Type: application/x-www-form-urlencoded\r\n",
        "key=resonance-key&secret=resonance-secret",
    )
    .await;
    assert_eq!(status, 200, "{text}");
    assert!(!text.contains("Secure"), "plain http: {text}");
    // Behind a TLS proxy the cookie is Secure.
    let (status, text) = request(
        addr,
        "POST",
        "/dashboard/login",
        "Content-Type: application/x-www-form-urlencoded\r\nX-Forwarded-Proto: https\r\n",
        "key=resonance-key&secret=resonance-secret",
    )
    .await;
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("; Secure"), "{text}");
    let (cookie, _) = login(
        addr,
        json!({ "key": "resonance-key", "secret": "resonance-secret" }),
    )
    .await;
    let (status, text) = snapshot(addr, "100000", &cookie).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(body(&text)["app"]["id"], "100000");
    let (status, _) = snapshot(addr, "200000", &cookie).await;
    assert_eq!(status, 403);
    let (_, text) = request(
        addr,
        "GET",
        "/dashboard/session",
        &format!("Cookie: {cookie}\r\n"),
        "",
    )
    .await;
    let apps = body(&text)["apps"].clone();
    assert_eq!(apps, json!([{ "id": "100000", "key": "resonance-key" }]));
    // Rewriting the cookie's scope breaks it.
    let value = cookie.split_once('=').unwrap().1;
    let parts: Vec<&str> = value.splitn(4, '.').collect();
    for forged in [
        format!("v1.{}.*.{}", parts[1], parts[3]),
        format!("v1.{}.app:{}.{}", parts[1], hex::encode("200000"), parts[3]),
        format!(
            "v1.{}.{}.{}",
            parts[1].parse::<u64>().unwrap() + 86_400,
            parts[2],
            parts[3]
        ),
    ] {
        let (status, _) = snapshot(addr, "100000", &format!("resonance_dashboard={forged}")).await;
        assert_eq!(status, 401, "{forged}");
    }

    // The operators' token opens every app, as a login or a bearer header.
    let (all, _) = login(addr, json!({ "token": TOKEN })).await;
    for app in ["100000", "200000"] {
        let (status, text) = snapshot(addr, app, &all).await;
        assert_eq!(status, 200, "{text}");
        let (status, text) = request(
            addr,
            "GET",
            &format!("/dashboard/snapshot?app={app}"),
            &format!("Authorization: Bearer {TOKEN}\r\n"),
            "",
        )
        .await;
        assert_eq!(status, 200, "{text}");
    }
    let (status, _) = request(
        addr,
        "GET",
        "/dashboard/snapshot",
        "Authorization: Bearer operators-token-0123456788\r\n",
        "",
    )
    .await;
    assert_eq!(status, 401);
    let (status, _) = snapshot(addr, "999", &all).await;
    assert_eq!(status, 404);
    server.shutdown().await;
}

#[tokio::test]
async fn figures_show_connections_channels_and_members() {
    let server = start(Server::builder(dashboard_config())).await;
    let addr = server.addr;
    let (cookie, _) = login(
        addr,
        json!({ "key": "resonance-key", "secret": "resonance-secret" }),
    )
    .await;
    let (_, text) = snapshot(addr, "100000", &cookie).await;
    let v = body(&text);
    assert_eq!(v["connections"], 0, "{v}");
    assert_eq!(v["cluster"]["adapter"], "local", "{v}");

    let (mut a, a_id) = pusher(addr, "resonance-key").await;
    subscribe(&mut a, "orders", None, None).await;
    let data = r#"{"user_id":"7","user_info":{"name":"Ann"}}"#;
    subscribe(
        &mut a,
        "presence-room",
        Some(presence_auth(&a_id, "presence-room", data)),
        Some(data),
    )
    .await;
    let (mut b, _) = pusher(addr, "resonance-key").await;
    subscribe(&mut b, "orders", None, None).await;
    // Another app's traffic does not show.
    let (mut other, _) = pusher(addr, "second-key").await;
    subscribe(&mut other, "secret-orders", None, None).await;

    let (_, text) = snapshot(addr, "100000", &cookie).await;
    let v = body(&text);
    assert_eq!(v["connections"], 2, "{v}");
    assert_eq!(v["subscriptions"], 3, "{v}");
    assert_eq!(v["channel_count"], 2, "{v}");
    assert_eq!(
        v["channels"][0],
        json!({ "name": "orders", "subscribers": 2, "users": null }),
        "{v}"
    );
    assert_eq!(v["channels"][1]["name"], "presence-room", "{v}");
    assert_eq!(v["channels"][1]["users"], 1, "{v}");
    assert_eq!(
        v["presence"],
        json!([{ "channel": "presence-room", "count": 1, "members": [{ "id": "7", "info": { "name": "Ann" } }] }]),
        "{v}"
    );
    assert!(!text.contains("secret-orders"), "{text}");
    drop((a, b, other));
    server.shutdown().await;
}

#[tokio::test]
async fn test_event_needs_csrf_and_reaches_a_client() {
    let server = start(Server::builder(dashboard_config())).await;
    let addr = server.addr;
    let (cookie, csrf) = login(
        addr,
        json!({ "key": "resonance-key", "secret": "resonance-secret" }),
    )
    .await;
    let (mut client, _) = pusher(addr, "resonance-key").await;
    subscribe(&mut client, "test-channel", None, None).await;
    let event = json!({ "channel": "test-channel", "event": "test-event", "data": "{\"n\":1}" })
        .to_string();
    let post = |headers: String| {
        let event = event.clone();
        async move {
            request(
                addr,
                "POST",
                "/dashboard/event?app=100000",
                &headers,
                &event,
            )
            .await
        }
    };
    // The cookie alone (what a cross-site form would send) is not enough.
    let (status, text) = post(format!(
        "Cookie: {cookie}\r\nContent-Type: application/json\r\n"
    ))
    .await;
    assert_eq!(status, 403, "{text}");
    let (status, _) = post(format!(
        "Cookie: {cookie}\r\nX-Dashboard-Csrf: {}\r\n",
        "0".repeat(64)
    ))
    .await;
    assert_eq!(status, 403);
    // The right token from another origin neither.
    let (status, _) = post(format!(
        "Cookie: {cookie}\r\nX-Dashboard-Csrf: {csrf}\r\nOrigin: https://evil.example\r\n"
    ))
    .await;
    assert_eq!(status, 403);
    // Another app's session cannot send to this app.
    let (other, other_csrf) = login(
        addr,
        json!({ "key": "second-key", "secret": "second-secret" }),
    )
    .await;
    let (status, _) = post(format!(
        "Cookie: {other}\r\nX-Dashboard-Csrf: {other_csrf}\r\n"
    ))
    .await;
    assert_eq!(status, 403);
    // Same origin, cookie and token: sent, and the client gets it.
    let (status, text) = post(format!(
        "Cookie: {cookie}\r\nX-Dashboard-Csrf: {csrf}\r\nOrigin: http://{addr}\r\n"
    ))
    .await;
    assert_eq!(status, 200, "{text}");
    let v: Value = serde_json::from_str(&next_text(&mut client).await).unwrap();
    assert_eq!(v["event"], "test-event", "{v}");
    assert_eq!(v["channel"], "test-channel", "{v}");
    assert_eq!(v["data"], "{\"n\":1}", "{v}");
    // The API's checks apply: a bad channel name and reserved names are 400.
    for bad in [
        json!({ "channel": "bad channel", "event": "e", "data": "x" }),
        json!({ "channel": "c", "event": "pusher:subscribe", "data": "x" }),
        json!({ "channel": "c" }),
    ] {
        let (status, text) = request(
            addr,
            "POST",
            "/dashboard/event?app=100000",
            &format!("Cookie: {cookie}\r\nX-Dashboard-Csrf: {csrf}\r\n"),
            &bad.to_string(),
        )
        .await;
        assert_eq!(status, 400, "{bad}: {text}");
    }
    server.shutdown().await;
}

#[tokio::test]
async fn live_socket_needs_the_session_and_pushes_changes() {
    let server = start(Server::builder(dashboard_config())).await;
    let addr = server.addr;
    assert!(live(addr, "100000", &[]).await.is_err(), "no cookie");
    let (cookie, _) = login(
        addr,
        json!({ "key": "resonance-key", "secret": "resonance-secret" }),
    )
    .await;
    assert!(
        live(
            addr,
            "100000",
            &[
                ("cookie", cookie.clone()),
                ("origin", "https://evil.example".into())
            ]
        )
        .await
        .is_err(),
        "cross-site socket"
    );
    assert!(
        live(addr, "200000", &[("cookie", cookie.clone())])
            .await
            .is_err(),
        "another app"
    );
    let mut watcher = live(
        addr,
        "100000",
        &[
            ("cookie", cookie.clone()),
            ("origin", format!("http://{addr}")),
        ],
    )
    .await
    .expect("live socket");
    let first = next_of(&mut watcher, "stats").await;
    assert_eq!(first["full_history"], true, "{first}");
    assert_eq!(first["connections"], 0, "{first}");
    let (mut client, _) = pusher(addr, "resonance-key").await;
    subscribe(&mut client, "live-orders", None, None).await;
    // Pushed without asking: a later message shows the subscriber.
    let mut seen = false;
    for _ in 0..5 {
        let v = next_of(&mut watcher, "stats").await;
        assert_eq!(v["full_history"], false, "{v}");
        if v["connections"] == 1 && v["channels"][0]["name"] == "live-orders" {
            seen = true;
            break;
        }
    }
    assert!(seen, "the live socket never showed the new subscriber");
    drop(client);
    server.shutdown().await;
}

#[tokio::test]
async fn debug_console_logs_this_apps_happenings() {
    let server = start(Server::builder(dashboard_config())).await;
    let addr = server.addr;
    let (cookie, _) = login(
        addr,
        json!({ "key": "resonance-key", "secret": "resonance-secret" }),
    )
    .await;
    let mut watcher = live(addr, "100000", &[("cookie", cookie)])
        .await
        .expect("live socket");
    next_of(&mut watcher, "stats").await;
    // Another app's traffic first: it must not show up.
    let (mut other, _) = pusher(addr, "second-key").await;
    subscribe(&mut other, "other-app-channel", None, None).await;
    let (mut a, a_id) = pusher(addr, "resonance-key").await;
    subscribe(&mut a, "console-demo", None, None).await;
    subscribe(
        &mut a,
        "private-chat",
        Some(private_auth(&a_id, "private-chat")),
        None,
    )
    .await;
    let (mut b, b_id) = pusher(addr, "resonance-key").await;
    subscribe(
        &mut b,
        "private-chat",
        Some(private_auth(&b_id, "private-chat")),
        None,
    )
    .await;
    send_text(
        &mut a,
        &json!({ "event": "client-typing", "channel": "private-chat", "data": { "typing": true } })
            .to_string(),
    )
    .await;
    let (status, text) = trigger(addr, "console-demo", "order-shipped", "{}").await;
    assert_eq!(status, 200, "{text}");
    // The API event is the last thing done: everything before it is logged
    // by then, in order.
    let mut lines: Vec<Value> = Vec::new();
    while !lines.iter().any(|l| l["kind"] == "api_message") {
        let log = next_of(&mut watcher, "log").await;
        lines.extend(log["entries"].as_array().unwrap().iter().cloned());
    }
    let has = |kind: &str, channel: Option<&str>, socket: Option<&str>| {
        lines.iter().any(|l| {
            l["kind"] == kind
                && channel.is_none_or(|c| l["channel"] == c)
                && socket.is_none_or(|s| l["socket_id"] == s)
        })
    };
    assert!(has("connection", None, Some(&a_id)), "{lines:?}");
    assert!(
        has("subscribed", Some("console-demo"), Some(&a_id)),
        "{lines:?}"
    );
    assert!(
        has("subscribed", Some("private-chat"), Some(&b_id)),
        "{lines:?}"
    );
    assert!(
        has("client_event", Some("private-chat"), Some(&a_id)),
        "{lines:?}"
    );
    let api = lines.iter().find(|l| l["kind"] == "api_message").unwrap();
    assert_eq!(api["channel"], "console-demo", "{api}");
    assert_eq!(api["event"], "order-shipped", "{api}");
    assert!(api["at"].as_u64().unwrap() > 0, "{api}");
    let text = serde_json::to_string(&lines).unwrap();
    assert!(!text.contains("other-app-channel"), "{text}");
    drop((a, b, other));
    server.shutdown().await;
}

#[tokio::test]
async fn repeated_failed_logins_are_refused_for_a_while() {
    let server = start(Server::builder(dashboard_config())).await;
    let addr = server.addr;
    let attempt = |secret: &'static str| async move {
        request(
            addr,
            "POST",
            "/dashboard/login",
            "Content-Type: application/json\r\n",
            &json!({ "key": "resonance-key", "secret": secret }).to_string(),
        )
        .await
        .0
    };
    // Successful logins cost nothing.
    for _ in 0..12 {
        assert_eq!(attempt("resonance-secret").await, 200);
    }
    for _ in 0..10 {
        assert_eq!(attempt("guess").await, 401);
    }
    // Then even the right secret is refused from that address.
    assert_eq!(attempt("guess").await, 429);
    assert_eq!(attempt("resonance-secret").await, 429);
    server.shutdown().await;
}
