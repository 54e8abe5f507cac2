//! The Pusher HTTP API against a real server on a free port, signed as the
//! SDKs sign: trigger, batch, channels, channel, users, terminate, and the
//! error statuses (401 signature/timestamp/body_md5, 404, 400, 413).

mod common;
mod signed;

use common::*;
use serde_json::{Value, json};
use signed::*;

async fn event(client: &mut Client) -> Value {
    let text = next_text(client).await;
    let mut v: Value = serde_json::from_str(&text).expect("JSON");
    if let Some(data) = v.get("data").and_then(Value::as_str)
        && let Ok(decoded) = serde_json::from_str::<Value>(data)
    {
        v["data"] = decoded;
    }
    v
}

async fn expect(client: &mut Client, name: &str) -> Value {
    for _ in 0..20 {
        let v = event(client).await;
        if v["event"] == name {
            return v;
        }
    }
    panic!("no {name} within 20 messages");
}

/// A Pusher client subscribed to `channel` (presence as `user` when given).
async fn subscribed(addr: std::net::SocketAddr, channel: &str, user: Option<&str>) -> Client {
    let mut c = connect(addr, "/app/resonance-key").await;
    let v = event(&mut c).await;
    let id = v["data"]["socket_id"]
        .as_str()
        .expect("socket_id")
        .to_string();
    let data = match user {
        Some(u) => {
            let cd = json!({ "user_id": u }).to_string();
            json!({ "channel": channel, "auth": presence_auth(&id, channel, &cd), "channel_data": cd })
        }
        None if channel.starts_with("private-") => {
            json!({ "channel": channel, "auth": private_auth(&id, channel) })
        }
        None => json!({ "channel": channel }),
    };
    send_text(
        &mut c,
        &json!({ "event": "pusher:subscribe", "data": data }).to_string(),
    )
    .await;
    expect(&mut c, "pusher_internal:subscription_succeeded").await;
    c
}

#[tokio::test]
async fn trigger_and_batch() {
    let server = start(resonance::server::Server::builder(config())).await;
    let mut a = subscribed(server.addr, "a", None).await;
    let mut b = subscribed(server.addr, "private-b", None).await;

    let body =
        json!({ "name": "e1", "channels": ["a", "private-b"], "data": "{\"n\":1}" }).to_string();
    let (status, text) = api(server.addr, "POST", "/apps/100000/events", "", &body).await;
    assert_eq!((status, json(&text)), (200, json!({})), "{text}");
    assert_eq!(expect(&mut a, "e1").await["data"], json!({"n":1}));
    assert_eq!(expect(&mut b, "e1").await["data"], json!({"n":1}));

    let body = json!({ "batch": [
        { "name": "b1", "channel": "a", "data": "1" },
        { "name": "b2", "channel": "private-b", "data": "2" },
        { "name": "b3", "channel": "a", "data": "3" },
    ]})
    .to_string();
    let (status, text) = api(server.addr, "POST", "/apps/100000/batch_events", "", &body).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(event(&mut a).await["event"], "b1");
    assert_eq!(
        event(&mut a).await["event"],
        "b3",
        "batch order kept per channel"
    );
    assert_eq!(expect(&mut b, "b2").await["data"], 2);
    server.shutdown().await;
}

#[tokio::test]
async fn errors_have_statuses_and_messages() {
    let server = start(resonance::server::Server::builder(config())).await;
    let addr = server.addr;
    let body = json!({ "name": "e", "channel": "a", "data": "x" }).to_string();
    let events = "/apps/100000/events";

    // Wrong secret: 401.
    let (status, text) = api_with(addr, "POST", events, "", &body, "wrong").await;
    assert_eq!(status, 401, "{text}");
    assert!(json(&text)["error"].is_string(), "{text}");
    // Body changed after signing: body_md5 mismatch, 401.
    let target = signed_target("POST", events, "", &body, SECRET);
    let (status, text) = raw_request(addr, "POST", &target, &body.replace('x', "y")).await;
    assert_eq!(status, 401, "{text}");
    // A stale timestamp: 401.
    let stale = signed_target("POST", events, "", &body, SECRET).replace(
        &format!("auth_timestamp={}", now()),
        &format!("auth_timestamp={}", now() - 3600),
    );
    let (status, text) = raw_request(addr, "POST", &stale, &body).await;
    assert_eq!(status, 401, "{text}");
    // No credentials at all: 401.
    let (status, _) = raw_request(addr, "POST", events, &body).await;
    assert_eq!(status, 401);
    // Unknown app: 404.
    let (status, text) = api(addr, "POST", "/apps/999/events", "", &body).await;
    assert_eq!(status, 404, "{text}");
    // Unknown endpoint: 404.
    let (status, _) = api(addr, "GET", "/apps/100000/nothing", "", "").await;
    assert_eq!(status, 404);
    // Not JSON, missing channel, bad channel name: 400.
    for bad in [
        "not json".to_string(),
        json!({ "name": "e", "data": "x" }).to_string(),
        json!({ "name": "e", "channel": "bad name", "data": "x" }).to_string(),
    ] {
        let (status, text) = api(addr, "POST", events, "", &bad).await;
        assert_eq!(status, 400, "{bad}: {text}");
    }
    // Data over max_event_bytes: 413.
    let big = json!({ "name": "e", "channel": "a", "data": "x".repeat(20 * 1024) }).to_string();
    let (status, text) = api(addr, "POST", events, "", &big).await;
    assert_eq!(status, 413, "{text}");
    // Unknown info attribute: 400.
    let (status, _) = api(addr, "GET", "/apps/100000/channels", "info=nope", "").await;
    assert_eq!(status, 400);

    // The server still serves after all that.
    let (status, _) = api(addr, "POST", events, "", &body).await;
    assert_eq!(status, 200);
    server.shutdown().await;
}

#[tokio::test]
async fn channels_channel_users_and_terminate() {
    let server = start(resonance::server::Server::builder(config())).await;
    let addr = server.addr;
    let _a1 = subscribed(addr, "presence-room", Some("7")).await;
    let mut a2 = subscribed(addr, "presence-room", Some("8")).await;
    let _b = subscribed(addr, "orders", None).await;

    let (status, text) = api(addr, "GET", "/apps/100000/channels", "", "").await;
    assert_eq!(status, 200, "{text}");
    let v = json(&text);
    assert!(v["channels"]["orders"].is_object(), "{text}");
    assert!(v["channels"]["presence-room"].is_object(), "{text}");

    let (status, text) = api(
        addr,
        "GET",
        "/apps/100000/channels",
        "filter_by_prefix=presence-&info=user_count",
        "",
    )
    .await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(
        json(&text),
        json!({ "channels": { "presence-room": { "user_count": 2 } } })
    );

    let (status, text) = api(
        addr,
        "GET",
        "/apps/100000/channels/orders",
        "info=subscription_count",
        "",
    )
    .await;
    assert_eq!(status, 200, "{text}");
    let v = json(&text);
    assert_eq!(
        (v["occupied"].clone(), v["subscription_count"].clone()),
        (json!(true), json!(1)),
        "{text}"
    );
    let (_, text) = api(addr, "GET", "/apps/100000/channels/empty", "", "").await;
    assert_eq!(json(&text)["occupied"], false, "{text}");

    let (status, text) = api(
        addr,
        "GET",
        "/apps/100000/channels/presence-room/users",
        "",
        "",
    )
    .await;
    assert_eq!(status, 200, "{text}");
    let mut ids: Vec<String> = json(&text)["users"]
        .as_array()
        .expect("users")
        .iter()
        .filter_map(|u| u["id"].as_str().map(String::from))
        .collect();
    ids.sort();
    assert_eq!(ids, ["7", "8"]);
    let (status, _) = api(addr, "GET", "/apps/100000/channels/orders/users", "", "").await;
    assert_eq!(status, 400, "users of a non-presence channel");

    // Terminate user 8: its connection gets error 4009 and closes; user 7 sees it leave.
    let (status, text) = api(
        addr,
        "POST",
        "/apps/100000/users/8/terminate_connections",
        "",
        "{}",
    )
    .await;
    assert_eq!(status, 200, "{text}");
    loop {
        match next(&mut a2).await {
            Some(m) if m.is_close() => {
                assert_eq!(m.as_close().map(|(c, _)| u16::from(c)), Some(4009), "{m:?}");
                break;
            }
            Some(_) => continue,
            None => panic!("closed without a close frame"),
        }
    }
    let mut a1 = _a1;
    let removed = expect(&mut a1, "pusher_internal:member_removed").await;
    assert_eq!(removed["data"]["user_id"], "8");
    server.shutdown().await;
}
