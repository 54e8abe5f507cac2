//! The Pusher front-end (`/app/{key}`) against a real server on a free
//! port, with tokio-websockets as the client: connect, ping, public,
//! private and presence subscriptions (signed as an auth endpoint signs),
//! member_added/removed, client events and their refusals. Negative cases
//! wait for a sentinel event sent through the same path, never a sleep.

mod common;
mod signed;

use common::*;
use futures_util::SinkExt;
use serde_json::{Value, json};
use signed::*;

/// The next Pusher message as JSON (`data` decoded when it is a string).
async fn event(client: &mut Client) -> Value {
    let text = next_text(client).await;
    let mut v: Value = serde_json::from_str(&text).expect("Pusher messages are JSON");
    if let Some(data) = v.get("data").and_then(Value::as_str)
        && let Ok(decoded) = serde_json::from_str::<Value>(data)
    {
        v["data"] = decoded;
    }
    v
}

/// The next message named `name`, skipping others (e.g. subscription counts).
async fn expect(client: &mut Client, name: &str) -> Value {
    for _ in 0..20 {
        let v = event(client).await;
        if v["event"] == name {
            return v;
        }
    }
    panic!("no {name} within 20 messages");
}

/// Connects and returns the client with its socket id.
async fn pusher(addr: std::net::SocketAddr) -> (Client, String) {
    let mut c = connect(
        addr,
        "/app/resonance-key?protocol=7&client=js&version=8.4.0",
    )
    .await;
    let v = event(&mut c).await;
    assert_eq!(v["event"], "pusher:connection_established", "{v}");
    let id = v["data"]["socket_id"]
        .as_str()
        .expect("socket_id")
        .to_string();
    assert!(v["data"]["activity_timeout"].is_u64(), "{v}");
    (c, id)
}

async fn send(client: &mut Client, v: Value) {
    send_text(client, &v.to_string()).await;
}

async fn subscribe(
    client: &mut Client,
    channel: &str,
    auth: Option<&str>,
    channel_data: Option<&str>,
) {
    let mut data = json!({ "channel": channel });
    if let Some(a) = auth {
        data["auth"] = a.into();
    }
    if let Some(cd) = channel_data {
        data["channel_data"] = cd.into();
    }
    send(client, json!({ "event": "pusher:subscribe", "data": data })).await;
}

async fn trigger_api(addr: std::net::SocketAddr, channel: &str, name: &str, data: &str) {
    let body = json!({ "name": name, "channel": channel, "data": data }).to_string();
    let (status, text) = api(addr, "POST", "/apps/100000/events", "", &body).await;
    assert_eq!(status, 200, "{text}");
}

#[tokio::test]
async fn connect_ping_and_public_channels() {
    let server = start(resonance::server::Server::builder(config())).await;
    let (mut c, _) = pusher(server.addr).await;
    send(&mut c, json!({ "event": "pusher:ping", "data": {} })).await;
    assert_eq!(event(&mut c).await["event"], "pusher:pong");

    subscribe(&mut c, "orders", None, None).await;
    let ok = expect(&mut c, "pusher_internal:subscription_succeeded").await;
    assert_eq!(ok["channel"], "orders");
    trigger_api(server.addr, "orders", "shipped", r#"{"id":1}"#).await;
    let got = expect(&mut c, "shipped").await;
    assert_eq!(
        (got["channel"].clone(), got["data"].clone()),
        (json!("orders"), json!({"id":1}))
    );

    // Unsubscribed: the next event on the channel is not delivered; a
    // sentinel on another channel proves the path was flushed.
    send(
        &mut c,
        json!({ "event": "pusher:unsubscribe", "data": { "channel": "orders" } }),
    )
    .await;
    subscribe(&mut c, "sentinel", None, None).await;
    expect(&mut c, "pusher_internal:subscription_succeeded").await;
    trigger_api(server.addr, "orders", "after-unsubscribe", "{}").await;
    trigger_api(server.addr, "sentinel", "sentinel", "{}").await;
    assert_eq!(
        event(&mut c).await["event"],
        "sentinel",
        "nothing before the sentinel"
    );

    // Bad input gets a Pusher error, and the connection keeps working.
    send_text(&mut c, "not json").await;
    let err = event(&mut c).await;
    assert_eq!(err["event"], "pusher:error", "{err}");
    send(&mut c, json!({ "event": "pusher:ping", "data": {} })).await;
    assert_eq!(event(&mut c).await["event"], "pusher:pong");

    // Unknown key: error 4001 and close.
    let mut bad = connect(server.addr, "/app/nope").await;
    let err = event(&mut bad).await;
    assert_eq!(err["data"]["code"], 4001, "{err}");
    server.shutdown().await;
}

#[tokio::test]
async fn private_channels_need_a_valid_signature() {
    let server = start(resonance::server::Server::builder(config())).await;
    let (mut c, id) = pusher(server.addr).await;

    subscribe(&mut c, "private-orders", Some("resonance-key:bad"), None).await;
    let err = event(&mut c).await;
    assert_eq!(err["event"], "pusher:subscription_error", "{err}");
    subscribe(&mut c, "private-orders", None, None).await;
    let err = event(&mut c).await;
    assert_eq!(
        err["event"], "pusher:subscription_error",
        "missing auth: {err}"
    );
    // A signature for another socket is refused too.
    let other = private_auth("1.2", "private-orders");
    subscribe(&mut c, "private-orders", Some(&other), None).await;
    assert_eq!(event(&mut c).await["event"], "pusher:subscription_error");

    subscribe(
        &mut c,
        "private-orders",
        Some(&private_auth(&id, "private-orders")),
        None,
    )
    .await;
    expect(&mut c, "pusher_internal:subscription_succeeded").await;
    trigger_api(server.addr, "private-orders", "secret", r#""s""#).await;
    assert_eq!(expect(&mut c, "secret").await["data"], "s");
    server.shutdown().await;
}

#[tokio::test]
async fn presence_members_and_client_events() {
    let server = start(resonance::server::Server::builder(config())).await;
    let channel = "presence-room";
    let (mut a, a_id) = pusher(server.addr).await;
    let a_data = r#"{"user_id":"1","user_info":{"name":"Ann"}}"#;
    subscribe(
        &mut a,
        channel,
        Some(&presence_auth(&a_id, channel, a_data)),
        Some(a_data),
    )
    .await;
    let ok = expect(&mut a, "pusher_internal:subscription_succeeded").await;
    assert_eq!(ok["data"]["presence"]["count"], 1, "{ok}");
    assert_eq!(ok["data"]["presence"]["hash"]["1"]["name"], "Ann", "{ok}");

    let (mut b, b_id) = pusher(server.addr).await;
    let b_data = r#"{"user_id":"2","user_info":{"name":"Bob"}}"#;
    // channel_data that does not match the signature is refused.
    subscribe(
        &mut b,
        channel,
        Some(&presence_auth(&b_id, channel, a_data)),
        Some(b_data),
    )
    .await;
    assert_eq!(event(&mut b).await["event"], "pusher:subscription_error");
    subscribe(
        &mut b,
        channel,
        Some(&presence_auth(&b_id, channel, b_data)),
        Some(b_data),
    )
    .await;
    let ok = expect(&mut b, "pusher_internal:subscription_succeeded").await;
    assert_eq!(ok["data"]["presence"]["count"], 2, "{ok}");
    let added = expect(&mut a, "pusher_internal:member_added").await;
    assert_eq!(added["data"]["user_id"], "2", "{added}");

    // Client events reach the others on the channel, never the sender.
    send(
        &mut a,
        json!({ "event": "client-typing", "channel": channel, "data": { "who": "Ann" } }),
    )
    .await;
    let typing = expect(&mut b, "client-typing").await;
    assert_eq!(typing["data"]["who"], "Ann");
    assert_eq!(
        typing["user_id"], "1",
        "presence client events carry user_id: {typing}"
    );
    trigger_api(server.addr, channel, "sentinel", "{}").await;
    assert_eq!(
        event(&mut a).await["event"],
        "sentinel",
        "the sender did not get its own client event"
    );

    // On a public channel client events are refused.
    subscribe(&mut a, "public", None, None).await;
    expect(&mut a, "pusher_internal:subscription_succeeded").await;
    send(
        &mut a,
        json!({ "event": "client-x", "channel": "public", "data": {} }),
    )
    .await;
    let err = event(&mut a).await;
    assert_eq!(err["event"], "pusher:error", "{err}");

    // Bob leaves: Ann sees member_removed.
    b.close().await.expect("close");
    drop(b);
    let removed = expect(&mut a, "pusher_internal:member_removed").await;
    assert_eq!(removed["data"]["user_id"], "2", "{removed}");
    server.shutdown().await;
}
