//! Credential paths, from the outside: what a client that holds only the
//! public app key (the one in every browser bundle) can and cannot reach.
//! Real server on a free port, real clients.

mod common;

use std::time::{SystemTime, UNIX_EPOCH};

use common::*;
use resonance::custom::{Callbacks, Conn, Message, Route, auth};
use resonance::server::Server;

/// A secret API key, as laravel-echo-server's `clients` key.
const API_KEY: &str = "0123456789abcdef0123456789abcdef";

fn post(path: &str, extra_headers: &str, body: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{extra_headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

const EVENT: &str = r#"{"channel":"private-App.Models.User.1","name":"e","data":{"x":1}}"#;

/// The Pusher subscription for `channel` on a fresh `/app/resonance-key`
/// connection, after the connection_established.
async fn pusher_client(addr: std::net::SocketAddr) -> Client {
    let mut c = connect(addr, "/app/resonance-key?protocol=7").await;
    let hello = next_text(&mut c).await;
    assert!(hello.contains("connection_established"), "{hello}");
    c
}

#[tokio::test]
async fn echo_api_is_off_without_an_api_key_and_refuses_the_public_key() {
    let server = start(Server::builder(config())).await;
    // The public key as Bearer and as auth_key: the API is off, and says how
    // to turn it on.
    for (path, header) in [
        (
            "/apps/100000/events",
            "Authorization: Bearer resonance-key\r\n",
        ),
        ("/apps/100000/events?auth_key=resonance-key", ""),
    ] {
        let (status, text) = http(server.addr, &post(path, header, EVENT)).await;
        assert_eq!(status, 403, "{text}");
        assert!(text.contains("extra_api_keys"), "{text}");
    }
    let (status, text) = get(
        server.addr,
        "/apps/100000/channels/presence-room/users?auth_key=resonance-key",
    )
    .await;
    assert_eq!(status, 403, "{text}");
    server.shutdown().await;
}

#[tokio::test]
async fn echo_api_takes_only_the_configured_api_keys() {
    let mut c = config();
    c.apps[0].extra_api_keys = vec![API_KEY.into()];
    let server = start(Server::builder(c)).await;
    let (status, text) = http(
        server.addr,
        &post(
            "/apps/100000/events",
            "Authorization: Bearer resonance-key\r\n",
            EVENT,
        ),
    )
    .await;
    assert_eq!(status, 403, "{text}");
    assert!(text.contains(r#"{"error":"Unauthorized"}"#), "{text}");
    let (status, text) = get(server.addr, "/apps/100000/channels?auth_key=resonance-key").await;
    assert_eq!(status, 403, "{text}");
    // The API key works, and the event reaches a public subscriber.
    let mut client = pusher_client(server.addr).await;
    send_text(
        &mut client,
        r#"{"event":"pusher:subscribe","data":{"channel":"news"}}"#,
    )
    .await;
    assert!(
        next_text(&mut client)
            .await
            .contains("subscription_succeeded")
    );
    let (status, text) = http(
        server.addr,
        &post(
            "/apps/100000/events",
            &format!("Authorization: Bearer {API_KEY}\r\n"),
            r#"{"channel":"news","name":"e","data":{"x":1}}"#,
        ),
    )
    .await;
    assert_eq!(status, 200, "{text}");
    assert!(next_text(&mut client).await.contains(r#""event":"e""#));
    let (status, text) = get(
        server.addr,
        &format!("/apps/100000/status?auth_key={API_KEY}"),
    )
    .await;
    assert_eq!(status, 200, "{text}");
    server.shutdown().await;
}

#[tokio::test]
async fn api_keys_equal_to_the_app_key_or_short_are_refused_at_start() {
    let mut c = config();
    c.apps[0].extra_api_keys = vec!["resonance-key".into()];
    let err = c.validate().unwrap_err();
    assert!(err.contains("extra_api_keys[0]"), "{err}");
    c.apps[0].extra_api_keys = vec!["short".into()];
    assert!(c.validate().unwrap_err().contains("at least 16"));
}

#[tokio::test]
async fn terminate_by_auth_key_still_needs_the_signature() {
    let server = start(Server::builder(config())).await;
    let (status, text) = http(
        server.addr,
        &post(
            "/users/1/terminate_connections?auth_key=resonance-key",
            "",
            "{}",
        ),
    )
    .await;
    assert_eq!(status, 401, "{text}");
    let (status, text) = http(
        server.addr,
        &post(
            "/users/1/terminate_connections?auth_key=resonance-key&auth_timestamp=1&auth_version=1.0&auth_signature=00",
            "",
            "{}",
        ),
    )
    .await;
    assert_eq!(status, 401, "{text}");
    // A Pusher API call with the key and no signature is not the echo API.
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (status, text) = get(
        server.addr,
        &format!("/apps/100000/channels?auth_key=resonance-key&auth_timestamp={now}&auth_version=1.0&auth_signature=bad"),
    )
    .await;
    assert_eq!(status, 401, "{text}");
    server.shutdown().await;
}

/// Joins the room a client names in its message; says how it went.
struct JoinOnRequest;

impl Callbacks for JoinOnRequest {
    async fn on_message(&self, conn: &Conn, message: Message) {
        let room = message.as_text().unwrap_or_default().to_string();
        match conn.join(&room) {
            Ok(()) => {
                conn.send(format!("joined {room}"));
            }
            Err(e) => conn.close(resonance::custom::ROOM_REFUSED, &e.to_string()),
        }
    }
}

#[tokio::test]
async fn raw_rooms_from_the_path_cannot_be_private_channels() {
    let route = Route::echo()
        .room_param("room")
        .authenticator(auth::from_fn(|req| Ok(req.query_param("user"))));
    let server = start(Server::builder(config()).route("/chat/{room}", route)).await;
    for room in [
        "private-App.Models.User.1",
        "private-encrypted-secrets",
        "private-cache-x",
        "presence-chat",
        "%23server-to-user-1",
    ] {
        let (raw, head) = Raw::connect(server.addr, &format!("/chat/{room}?user=1"), "").await;
        assert!(raw.is_none(), "{room} accepted");
        assert!(head.starts_with("HTTP/1.1 403"), "{room}: {head}");
    }
    // Public rooms still open.
    let (raw, head) = Raw::connect(server.addr, "/chat/lobby", "").await;
    assert!(raw.is_some(), "{head}");
    server.shutdown().await;
}

#[tokio::test]
async fn authorize_rooms_admits_only_whom_it_says() {
    let route = Route::echo()
        .room_param("room")
        .authenticator(auth::from_fn(|req| Ok(req.query_param("user"))))
        .authorize_rooms(|user, room| {
            user.is_some_and(|u| room == format!("private-App.Models.User.{u}"))
        });
    let server = start(Server::builder(config()).route("/chat/{room}", route)).await;
    let (raw, head) = Raw::connect(server.addr, "/chat/private-App.Models.User.1?user=2", "").await;
    assert!(raw.is_none() && head.starts_with("HTTP/1.1 403"), "{head}");
    let (raw, head) = Raw::connect(server.addr, "/chat/private-App.Models.User.1", "").await;
    assert!(raw.is_none() && head.starts_with("HTTP/1.1 403"), "{head}");
    // Presence stays refused whatever the authoriser says.
    let (raw, head) = Raw::connect(server.addr, "/chat/presence-x?user=1", "").await;
    assert!(raw.is_none() && head.starts_with("HTTP/1.1 403"), "{head}");
    // User 1 joins its own channel and gets what the app sends there.
    let mut one = connect(server.addr, "/chat/private-App.Models.User.1?user=1").await;
    let (status, text) = trigger(server.addr, "private-App.Models.User.1", "hi", "x").await;
    assert_eq!(status, 200, "{text}");
    let got = next_text(&mut one).await;
    assert!(got.contains(r#""event":"hi""#), "{got}");
    server.shutdown().await;
}

#[tokio::test]
async fn conn_join_from_a_handler_refuses_private_rooms() {
    let server =
        start(Server::builder(config()).route("/j", Route::callbacks(JoinOnRequest))).await;
    let mut c = connect(server.addr, "/j").await;
    send_text(&mut c, "lobby").await;
    assert_eq!(next_text(&mut c).await, "joined lobby");
    let (raw, _) = Raw::connect(server.addr, "/j", "").await;
    let mut raw = raw.expect("upgrade");
    raw.frame(0x81, b"private-App.Models.User.1", true).await;
    let (code, reason) = raw.close_code().await.expect("a close frame");
    assert_eq!(code, 4009, "{reason}");
    assert!(reason.contains("private"), "{reason}");
    server.shutdown().await;
}

#[tokio::test]
async fn metrics_token_is_required_when_set() {
    let mut c = config();
    c.server.metrics_token = Some("scrape-token-123".into());
    let server = start(Server::builder(c)).await;
    let (status, _) = get(server.addr, "/metrics").await;
    assert_eq!(status, 401);
    let (status, _) = get(server.addr, "/metrics?token=wrong").await;
    assert_eq!(status, 401);
    let (status, text) = http(
        server.addr,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer scrape-token-123\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status, 200, "{text}");
    let (status, text) = get(server.addr, "/metrics?token=scrape-token-123").await;
    assert!(status == 200 && text.contains("resonance_"), "{text}");
    server.shutdown().await;
}

#[tokio::test]
async fn metrics_listener_moves_metrics_off_the_public_port() {
    let mut c = config();
    c.server.metrics_listen = Some("127.0.0.1:0".into());
    let server = Server::builder(c).bind().await.expect("bind");
    let metrics_addr = server.metrics_addr().expect("metrics listener");
    let running = start_server(server).await;
    let (status, _) = get(running.addr, "/metrics").await;
    assert_eq!(status, 404);
    let (status, text) = get(metrics_addr, "/metrics").await;
    assert!(status == 200 && text.contains("resonance_"), "{text}");
    let (status, _) = get(metrics_addr, "/apps/100000/channels").await;
    assert_eq!(status, 404);
    running.shutdown().await;
}

#[tokio::test]
async fn pusher_clients_cannot_take_other_users_or_private_channels() {
    let server = start(Server::builder(config())).await;
    let mut c = pusher_client(server.addr).await;
    // Another user's #server-to-user channel, without signing in.
    send_text(
        &mut c,
        r##"{"event":"pusher:subscribe","data":{"channel":"#server-to-user-1"}}"##,
    )
    .await;
    let got = next_text(&mut c).await;
    assert!(
        got.contains("subscription_error") && got.contains("403"),
        "{got}"
    );
    // A private channel with a made-up signature.
    send_text(
        &mut c,
        r#"{"event":"pusher:subscribe","data":{"channel":"private-a","auth":"resonance-key:00"}}"#,
    )
    .await;
    let got = next_text(&mut c).await;
    assert!(
        got.contains("subscription_error") && got.contains("401"),
        "{got}"
    );
    // A client event on a private channel it never joined is refused.
    send_text(
        &mut c,
        r#"{"event":"client-x","channel":"private-a","data":{}}"#,
    )
    .await;
    let got = next_text(&mut c).await;
    assert!(got.contains("pusher:error"), "{got}");
    server.shutdown().await;
}
