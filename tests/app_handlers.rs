//! Handler routes (`[[routes]]`): a real server, real WebSocket clients and
//! a real HTTP app (hyper, in this process) that records every call and
//! answers as the test's script says. Covers every event, every action,
//! ordering of a 100-message burst, slow, dead and refusing handlers, bad
//! answers, close on shutdown, the signed socket API, two nodes over a real
//! `redis-server`, and the client event hook. Negative checks wait for a
//! sentinel sent through the same path, never a fixed sleep.

mod common;
mod signed;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use futures_util::SinkExt;
use http_body_util::{BodyExt, Full};
use parking_lot::Mutex;
use resonance::config::Config;
use resonance::custom::app_handlers::RouteConfig;
use resonance::server::Server;
use serde_json::{Value, json};
use signed::*;
use tokio::sync::{Notify, mpsc};

/// One call the app received.
#[derive(Debug, Clone)]
struct Call {
    event: String,
    signature: String,
    cookie: Option<String>,
    forwarded_for: Option<String>,
    raw: Bytes,
    body: Value,
}

/// The app's answer: status, body, and how long to wait first.
struct Answer {
    status: u16,
    body: String,
    delay: Duration,
    /// Answer only once this is notified (bounded by the test timeout).
    wait: Option<Arc<Notify>>,
}

fn ok(body: Value) -> Answer {
    answer(200, &body.to_string())
}

fn answer(status: u16, body: &str) -> Answer {
    Answer {
        status,
        body: body.to_string(),
        delay: Duration::ZERO,
        wait: None,
    }
}

fn slow(body: &str, delay: Duration) -> Answer {
    Answer {
        delay,
        ..answer(200, body)
    }
}

type Script = Arc<dyn Fn(&Call) -> Answer + Send + Sync>;

/// An app on a free port. Calls are recorded on `calls`.
struct App {
    addr: SocketAddr,
    calls: mpsc::UnboundedReceiver<Call>,
    /// Message calls of one socket that were in flight at the same time
    /// (should stay 0).
    overlaps: Arc<AtomicUsize>,
}

impl App {
    async fn start(script: Script) -> App {
        use hyper::service::service_fn;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, calls) = mpsc::unbounded_channel();
        let overlaps = Arc::new(AtomicUsize::new(0));
        let busy: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
        let overlaps2 = overlaps.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (tx, script) = (tx.clone(), script.clone());
                let (busy, overlaps) = (busy.clone(), overlaps2.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let (tx, script) = (tx.clone(), script.clone());
                        let (busy, overlaps) = (busy.clone(), overlaps.clone());
                        async move {
                            let header = |n: &str| {
                                req.headers()
                                    .get(n)
                                    .and_then(|v| v.to_str().ok())
                                    .map(str::to_string)
                            };
                            let event = header("x-resonance-event").unwrap_or_default();
                            let signature = header("x-resonance-signature").unwrap_or_default();
                            let cookie = header("cookie");
                            let forwarded_for = header("x-forwarded-for");
                            let raw = req.into_body().collect().await.unwrap().to_bytes();
                            let body = serde_json::from_slice(&raw).unwrap_or(Value::Null);
                            let call = Call {
                                event,
                                signature,
                                cookie,
                                forwarded_for,
                                raw,
                                body,
                            };
                            let socket = (call.event == "message")
                                .then(|| call.body["socket_id"].as_str().unwrap_or("").to_string());
                            if let Some(id) = &socket {
                                let mut map = busy.lock();
                                let n = map.entry(id.clone()).or_default();
                                *n += 1;
                                if *n > 1 {
                                    overlaps.fetch_add(1, Ordering::SeqCst);
                                }
                            }
                            let answer = script(&call);
                            let _ = tx.send(call);
                            if !answer.delay.is_zero() {
                                tokio::time::sleep(answer.delay).await;
                            }
                            if let Some(wait) = &answer.wait {
                                let _ = tokio::time::timeout(TIMEOUT, wait.notified()).await;
                            }
                            if let Some(id) = &socket {
                                *busy.lock().entry(id.clone()).or_default() -= 1;
                            }
                            let mut r = hyper::Response::new(Full::new(Bytes::from(answer.body)));
                            *r.status_mut() = hyper::StatusCode::from_u16(answer.status).unwrap();
                            Ok::<_, std::convert::Infallible>(r)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        App {
            addr,
            calls,
            overlaps,
        }
    }

    /// The next call of `event` (others are skipped).
    async fn next(&mut self, event: &str) -> Call {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.calls.recv()).await {
                Ok(Some(call)) if call.event == event => return call,
                Ok(Some(_)) => {}
                _ => panic!("no {event} call within {TIMEOUT:?}"),
            }
        }
    }

    fn url(&self) -> String {
        format!("http://{}/socket", self.addr)
    }
}

/// The chat script: the user from a `session=u<ID>` cookie; a message that
/// is a JSON object with `actions` is answered with them (the test drives
/// every action that way); a few words for the failure cases.
fn chat_script() -> Script {
    Arc::new(|call: &Call| match call.event.as_str() {
        "connect" => {
            let user = call
                .cookie
                .as_deref()
                .and_then(|c| c.split("session=u").nth(1))
                .map(|u| u.split(';').next().unwrap_or("").to_string());
            let query = &call.body["query"];
            if let Some(status) = query["refuse"].as_str() {
                return answer(status.parse().unwrap(), "{}");
            }
            if query["slow"].is_string() {
                return slow("{}", Duration::from_secs(3));
            }
            if query["garbage"].is_string() {
                return answer(200, "<html>");
            }
            ok(json!({
                "user_id": user,
                "rooms": ["extra"],
                "actions": [{"send": "welcome"}],
            }))
        }
        "message" => {
            let data = call.body["data"].as_str().unwrap_or("");
            match data {
                "bad json" => answer(200, "not json"),
                "status 500" => answer(500, "{}"),
                "slow" => slow(
                    &json!({"actions": [{"send": "too late"}]}).to_string(),
                    Duration::from_secs(3),
                ),
                _ => match serde_json::from_str::<Value>(data) {
                    Ok(v @ Value::Object(_)) => ok(v),
                    _ if call.body["binary"] == true => {
                        ok(json!({"actions": [{"send_binary": call.body["data"]}]}))
                    }
                    _ => ok(json!({"actions": [{"send": format!("echo:{data}")}]})),
                },
            }
        }
        _ => ok(json!({})),
    })
}

fn config_with(routes: Vec<RouteConfig>) -> Config {
    let mut c = config();
    c.routes = routes;
    c.validate().expect("valid config");
    c
}

fn route(app: &App, path: &str, rooms: &[&str]) -> RouteConfig {
    RouteConfig {
        path: path.into(),
        handler: app.url(),
        rooms: rooms.iter().map(|r| r.to_string()).collect(),
        app: None,
        events: vec!["connect".into(), "message".into(), "close".into()],
        timeout: 1,
    }
}

async fn serve(config: Config) -> Running {
    start_server(Server::bind(config).await.expect("bind")).await
}

/// Connects with a session cookie; returns the client (after "welcome").
async fn chat_client(addr: SocketAddr, path: &str, user: Option<&str>) -> Client {
    let uri = format!("ws://{addr}{path}");
    let mut builder = tokio_websockets::ClientBuilder::new().uri(&uri).unwrap();
    if let Some(u) = user {
        builder = builder
            .add_header(
                "cookie".try_into().unwrap(),
                format!("theme=dark; session=u{u}").try_into().unwrap(),
            )
            .unwrap();
    }
    let (mut client, _) = builder.connect().await.expect("websocket connect");
    assert_eq!(next_text(&mut client).await, "welcome");
    client
}

async fn act(client: &mut Client, actions: Value) {
    send_text(client, &json!({ "actions": actions }).to_string()).await;
}

/// Whoever's id: sends a message whose answer echoes the socket id.
async fn socket_id_of(app: &mut App, client: &mut Client) -> String {
    send_text(client, "who").await;
    let call = app.next("message").await;
    assert_eq!(next_text(client).await, "echo:who");
    call.body["socket_id"].as_str().unwrap().to_string()
}

async fn metric(addr: SocketAddr, kind: &str) -> u64 {
    let (_, text) = get(addr, "/metrics").await;
    text.lines()
        .find(|l| {
            l.starts_with("resonance_errors_total") && l.contains(&format!("kind=\"{kind}\""))
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn every_event_and_every_action() {
    let mut app = App::start(chat_script()).await;
    let server = serve(config_with(vec![route(
        &app,
        "/chat-rooms/{id}",
        &["chat-rooms.{id}"],
    )]))
    .await;
    let mut alice = chat_client(server.addr, "/chat-rooms/7?lang=en", Some("1")).await;

    // connect: the contract's body and headers, signed with the app secret.
    let connect = app.next("connect").await;
    assert_eq!(connect.body["event"], "connect");
    assert_eq!(connect.body["path"], "/chat-rooms/7");
    assert_eq!(connect.body["params"], json!({"id": "7"}));
    assert_eq!(connect.body["query"], json!({"lang": "en"}));
    assert!(connect.body["headers"].is_object(), "{}", connect.body);
    assert_eq!(
        connect.signature,
        resonance::signing::hmac_sha256_hex(SECRET, &connect.raw)
    );
    assert!(connect.cookie.as_deref().unwrap().contains("session=u1"));
    assert_eq!(connect.forwarded_for.as_deref(), Some("127.0.0.1"));
    let alice_id = connect.body["socket_id"].as_str().unwrap().to_string();

    let mut bob = chat_client(server.addr, "/chat-rooms/7", Some("2")).await;
    let bob_id = app.next("connect").await.body["socket_id"]
        .as_str()
        .unwrap()
        .to_string();

    // message: text with user and params; the answer's send.
    send_text(&mut alice, "hello").await;
    let m = app.next("message").await;
    assert_eq!(m.body["data"], "hello");
    assert_eq!(m.body["user_id"], "1");
    assert_eq!(m.body["socket_id"], alice_id.as_str());
    assert_eq!(m.body["params"], json!({"id": "7"}));
    assert_eq!(
        m.signature,
        resonance::signing::hmac_sha256_hex(SECRET, &m.raw)
    );
    assert!(m.cookie.is_some());
    assert_eq!(next_text(&mut alice).await, "echo:hello");

    // binary message and send_binary.
    alice
        .send(tokio_websockets::Message::binary(vec![0u8, 1, 2, 255]))
        .await
        .unwrap();
    let m = app.next("message").await;
    assert_eq!(m.body["binary"], true);
    assert_eq!(m.body["data"], "AAEC/w==");
    let back = next(&mut alice).await.unwrap();
    assert!(back.is_binary());
    assert_eq!(&back.as_payload()[..], &[0u8, 1, 2, 255]);

    // broadcast to the path's room, except self: bob only.
    act(
        &mut alice,
        json!([{"broadcast": {"room": "chat-rooms.7", "data": "hi all", "except_self": true}},
               {"send": "sent"}]),
    )
    .await;
    assert_eq!(next_text(&mut alice).await, "sent");
    assert_eq!(next_text(&mut bob).await, "hi all");
    // broadcast including self, with JSON data serialised; the answer's room.
    act(
        &mut alice,
        json!([{"broadcast": {"room": "extra", "data": {"n": 1}}}]),
    )
    .await;
    assert_eq!(next_text(&mut alice).await, r#"{"n":1}"#);
    assert_eq!(next_text(&mut bob).await, r#"{"n":1}"#);

    // to_user and to_socket.
    act(
        &mut alice,
        json!([{"to_user": {"user_id": "2", "data": "for bob"}}]),
    )
    .await;
    assert_eq!(next_text(&mut bob).await, "for bob");
    act(
        &mut bob,
        json!([{"to_socket": {"socket_id": alice_id, "data": "psst"}}]),
    )
    .await;
    assert_eq!(next_text(&mut alice).await, "psst");

    // join / leave: a room only bob joins, then leaves.
    act(
        &mut bob,
        json!([{"join": "private-side"}, {"send": "joined"}]),
    )
    .await;
    assert_eq!(next_text(&mut bob).await, "joined");
    act(
        &mut alice,
        json!([{"broadcast": {"room": "private-side", "data": "side 1"}}]),
    )
    .await;
    assert_eq!(next_text(&mut bob).await, "side 1");
    act(
        &mut bob,
        json!([{"leave": "private-side"}, {"send": "left"}]),
    )
    .await;
    assert_eq!(next_text(&mut bob).await, "left");
    act(
        &mut alice,
        json!([{"broadcast": {"room": "private-side", "data": "side 2"}},
               {"broadcast": {"room": "chat-rooms.7", "data": "sentinel", "except_self": true}}]),
    )
    .await;
    assert_eq!(
        next_text(&mut bob).await,
        "sentinel",
        "left rooms stay left"
    );

    // Unknown and malformed actions are skipped; the rest run in order.
    let before = metric(server.addr, "handler_bad_action").await;
    act(
        &mut alice,
        json!([{"explode": true}, {"send": "a"}, {"join": "presence-x"}, {"send": "b"}]),
    )
    .await;
    assert_eq!(next_text(&mut alice).await, "a");
    assert_eq!(next_text(&mut alice).await, "b");
    assert_eq!(metric(server.addr, "handler_bad_action").await, before + 2);

    // close: what is queued first, then the code; the app hears close once.
    act(
        &mut alice,
        json!([{"send": "bye now"}, {"close": {"code": 4001, "reason": "bye"}}]),
    )
    .await;
    assert_eq!(next_text(&mut alice).await, "bye now");
    let frame = next(&mut alice).await.expect("close frame");
    assert_eq!(
        frame.as_close().map(|(c, r)| (u16::from(c), r.to_string())),
        Some((4001, "bye".into()))
    );
    let close = app.next("close").await;
    assert_eq!(close.body["socket_id"], alice_id.as_str());
    assert_eq!(close.body["code"], 4001);
    assert_eq!(close.body["reason"], "bye");
    assert_eq!(close.body["user_id"], "1");
    assert_eq!(close.body["path"], "/chat-rooms/7");

    // The client closing: close with its code.
    bob.close().await.unwrap();
    let close = app.next("close").await;
    assert_eq!(close.body["socket_id"], bob_id.as_str());
    assert_eq!(close.body["code"], 1000);
    server.shutdown().await;
}

#[tokio::test]
async fn a_burst_of_100_messages_reaches_the_app_in_order_one_at_a_time() {
    let base = chat_script();
    // Each answer takes a moment, so overlapping calls would be seen.
    let script: Script = Arc::new(move |call: &Call| {
        if call.event != "message" {
            return base(call);
        }
        let data = call.body["data"].as_str().unwrap_or("");
        slow(
            &json!({"actions": [{"send": data}]}).to_string(),
            Duration::from_millis(2),
        )
    });
    let mut app = App::start(script).await;
    let server = serve(config_with(vec![route(&app, "/burst", &[])])).await;
    let mut client = chat_client(server.addr, "/burst", None).await;
    for i in 0..100 {
        send_text(&mut client, &format!("m{i}")).await;
    }
    for i in 0..100 {
        let call = app.next("message").await;
        assert_eq!(
            call.body["data"],
            format!("m{i}"),
            "the app sees them in order"
        );
        assert_eq!(
            next_text(&mut client).await,
            format!("m{i}"),
            "answers in order"
        );
    }
    assert_eq!(
        app.overlaps.load(Ordering::SeqCst),
        0,
        "one message at a time per connection"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn connections_run_in_parallel() {
    // "hold" is answered only once another connection's "release" reached
    // the app: were connections served one after another, it never would.
    let gate = Arc::new(Notify::new());
    let gate2 = gate.clone();
    let base = chat_script();
    let script: Script =
        Arc::new(
            move |call: &Call| match (call.event.as_str(), call.body["data"].as_str()) {
                ("message", Some("hold")) => Answer {
                    wait: Some(gate2.clone()),
                    ..ok(json!({"actions": [{"send": "released"}]}))
                },
                ("message", Some("release")) => {
                    gate2.notify_one();
                    base(call)
                }
                _ => base(call),
            },
        );
    let app = App::start(script).await;
    let server = serve(config_with(vec![route(&app, "/p", &[])])).await;
    let mut a = chat_client(server.addr, "/p", None).await;
    let mut b = chat_client(server.addr, "/p", None).await;
    send_text(&mut a, "hold").await;
    send_text(&mut b, "release").await;
    assert_eq!(next_text(&mut b).await, "echo:release");
    assert_eq!(next_text(&mut a).await, "released");
    server.shutdown().await;
}

#[tokio::test]
async fn slow_dead_refusing_and_confused_handlers() {
    let mut app = App::start(chat_script()).await;
    // A port nothing listens on.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let mut dead_route = route(&app, "/dead", &[]);
    dead_route.handler = format!("http://{dead}/socket");
    let server = serve(config_with(vec![
        route(&app, "/chat/{id}", &["{id}"]),
        dead_route,
    ]))
    .await;
    let status = |path: &str| {
        let path = path.to_string();
        let addr = server.addr;
        async move {
            let (_, head) = Raw::connect(addr, &path, "").await;
            head.split(' ')
                .nth(1)
                .and_then(|s| s.parse::<u16>().ok())
                .unwrap_or(0)
        }
    };
    assert_eq!(status("/dead").await, 502, "unreachable app: 502");
    assert_eq!(status("/chat/1?refuse=403").await, 403, "the app's status");
    assert_eq!(status("/chat/1?refuse=401").await, 401);
    assert_eq!(
        status("/chat/1?slow=1").await,
        504,
        "no answer in time: 504"
    );
    assert_eq!(status("/chat/1?garbage=1").await, 502, "not JSON: 502");
    // A room from the path must be public, whatever the client puts there.
    assert_eq!(status("/chat/private-App.Models.User.1").await, 403);
    assert!(metric(server.addr, "handler_unreachable").await >= 1);
    assert!(metric(server.addr, "handler_timeout").await >= 1);
    assert!(metric(server.addr, "handler_bad_answer").await >= 1);

    // On an open connection a failed call is counted; the connection stays.
    let mut c = chat_client(server.addr, "/chat/1", None).await;
    send_text(&mut c, "slow").await;
    send_text(&mut c, "bad json").await;
    send_text(&mut c, "status 500").await;
    send_text(&mut c, "after").await;
    assert_eq!(
        next_text(&mut c).await,
        "echo:after",
        "nothing else was sent"
    );
    assert!(metric(server.addr, "handler_timeout").await >= 2);
    assert!(metric(server.addr, "handler_bad_answer").await >= 2);
    assert!(metric(server.addr, "handler_status").await >= 1);
    let _ = app.next("message").await;
    server.shutdown().await;
}

#[tokio::test]
async fn shutdown_closes_with_1001_and_tells_the_app() {
    let mut app = App::start(chat_script()).await;
    let mut only_close = route(&app, "/quiet", &[]);
    only_close.events = vec!["close".into()];
    let server = serve(config_with(vec![route(&app, "/chat", &[]), only_close])).await;
    let mut c = chat_client(server.addr, "/chat", Some("9")).await;
    let id = app.next("connect").await.body["socket_id"]
        .as_str()
        .unwrap()
        .to_string();
    // events = ["close"]: no connect call (no welcome), messages not posted.
    let mut quiet = connect(server.addr, "/quiet").await;
    send_text(&mut quiet, "unheard").await;
    server.shutdown().await;
    let frame = next(&mut c).await.expect("close frame");
    assert_eq!(
        frame.as_close().map(|(code, _)| u16::from(code)),
        Some(1001)
    );
    let mut closes = Vec::new();
    for _ in 0..2 {
        let call = app.next("close").await;
        assert_eq!(call.body["code"], 1001);
        closes.push(call.body["socket_id"].as_str().unwrap().to_string());
    }
    assert!(closes.contains(&id));
    // No message call was made for the quiet route.
    while let Ok(call) = app.calls.try_recv() {
        assert_ne!(call.event, "message", "{call:?}");
    }
}

#[tokio::test]
async fn the_signed_socket_api() {
    let mut app = App::start(chat_script()).await;
    let server = serve(config_with(vec![route(&app, "/chat/{id}", &["chat.{id}"])])).await;
    let mut a = chat_client(server.addr, "/chat/1", Some("5")).await;
    let mut b = chat_client(server.addr, "/chat/1", None).await;
    let a_id = socket_id_of(&mut app, &mut a).await;
    let b_id = socket_id_of(&mut app, &mut b).await;
    let post = |path: String, body: Value| {
        let addr = server.addr;
        async move { api(addr, "POST", &path, "", &body.to_string()).await }
    };
    let sock = |id: &str, op: &str| format!("/apps/{APP_ID}/sockets/{id}/{op}");

    assert_eq!(
        post(sock(&a_id, "send"), json!({"data": "one"})).await,
        (200, "{}".into())
    );
    assert_eq!(next_text(&mut a).await, "one");
    let (s, _) = post(sock(&a_id, "send"), json!({"data": "AAE=", "binary": true})).await;
    assert_eq!(s, 200);
    assert_eq!(&next(&mut a).await.unwrap().as_payload()[..], &[0u8, 1]);
    post(sock(&a_id, "send"), json!({"data": {"k": [1]}})).await;
    assert_eq!(next_text(&mut a).await, r#"{"k":[1]}"#);

    // join / leave, seen through a room broadcast with an exclusion list.
    assert_eq!(
        post(sock(&b_id, "join"), json!({"room": "private-team"}))
            .await
            .0,
        200
    );
    let room = |r: &str| format!("/apps/{APP_ID}/rooms/{r}/broadcast");
    post(room("private-team"), json!({"data": "team"})).await;
    assert_eq!(next_text(&mut b).await, "team");
    post(room("chat.1"), json!({"data": "not a", "except": [a_id]})).await;
    assert_eq!(next_text(&mut b).await, "not a");
    assert_eq!(
        post(sock(&b_id, "leave"), json!({"room": "private-team"}))
            .await
            .0,
        200
    );
    post(room("private-team"), json!({"data": "gone"})).await;
    post(sock(&b_id, "send"), json!({"data": "sentinel"})).await;
    assert_eq!(next_text(&mut b).await, "sentinel");
    // a was excluded from the chat.1 broadcast: its next message is this.
    post(sock(&a_id, "send"), json!({"data": "a-sentinel"})).await;
    assert_eq!(next_text(&mut a).await, "a-sentinel");

    // users/{id}/send, actions, close.
    post(
        format!("/apps/{APP_ID}/users/5/send"),
        json!({"data": "to five"}),
    )
    .await;
    assert_eq!(next_text(&mut a).await, "to five");
    let (s, body) = post(
        sock(&a_id, "actions"),
        json!({"actions": [{"broadcast": {"room": "chat.1", "data": "from a", "except_self": true}}]}),
    )
    .await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(next_text(&mut b).await, "from a");
    assert_eq!(
        post(sock(&b_id, "close"), json!({"code": 4000, "reason": "bye"}))
            .await
            .0,
        200
    );
    let frame = next(&mut b).await.unwrap();
    assert_eq!(frame.as_close().map(|(c, _)| u16::from(c)), Some(4000));

    // Errors: unknown socket 404, bad input 400, bad signature 401.
    let (s, body) = post(sock("123.456", "send"), json!({"data": "x"})).await;
    assert_eq!(
        (s, json(&body)["error"].as_str().unwrap()),
        (404, "unknown socket")
    );
    assert_eq!(
        post(sock("nope", "send"), json!({"data": "x"})).await.0,
        400
    );
    assert_eq!(post(sock(&a_id, "send"), json!({})).await.0, 400);
    assert_eq!(
        post(sock(&a_id, "join"), json!({"room": "presence-x"}))
            .await
            .0,
        400
    );
    assert_eq!(
        post(sock(&a_id, "close"), json!({"code": 1006})).await.0,
        400
    );
    assert_eq!(
        post(sock(&a_id, "actions"), json!({"actions": [{"nope": 1}]}))
            .await
            .0,
        400
    );
    let (s, body) = api_with(
        server.addr,
        "POST",
        &sock(&a_id, "send"),
        "",
        r#"{"data":"x"}"#,
        "wrong-secret",
    )
    .await;
    assert_eq!(s, 401, "{body}");
    let (s, _) = raw_request(server.addr, "POST", &sock(&a_id, "send"), r#"{"data":"x"}"#).await;
    assert_eq!(s, 401, "unsigned");
    // Nothing of the refused calls reached a.
    post(sock(&a_id, "send"), json!({"data": "last"})).await;
    assert_eq!(next_text(&mut a).await, "last");
    server.shutdown().await;
}

/// A private `redis-server` on a free port, killed on drop.
struct RedisServer {
    child: std::process::Child,
    url: String,
}

impl RedisServer {
    async fn start() -> RedisServer {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let child = std::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server on PATH");
        let url = format!("redis://127.0.0.1:{port}/");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                break;
            }
            assert!(Instant::now() < deadline, "redis-server did not start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        RedisServer { child, url }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_broadcast_to_user_and_to_socket_across_nodes() {
    let redis = RedisServer::start().await;
    let mut app = App::start(chat_script()).await;
    let node_config = || {
        let mut c = config_with(vec![route(&app, "/chat/{id}", &["chat.{id}"])]);
        c.cluster.adapter = "redis".into();
        c.cluster.redis_url = Some(redis.url.clone());
        c.cluster.prefix = format!("handlers-{}", std::process::id());
        c
    };
    let one = serve(node_config()).await;
    let two = serve(node_config()).await;
    let mut a = chat_client(one.addr, "/chat/1", Some("1")).await;
    let mut b = chat_client(two.addr, "/chat/1", Some("2")).await;
    let a_id = socket_id_of(&mut app, &mut a).await;
    let b_id = socket_id_of(&mut app, &mut b).await;

    // The cluster carries a broadcast once its subscription is known: retry
    // the first one until it arrives (bounded), then everything is live.
    let deadline = Instant::now() + TIMEOUT;
    loop {
        act(
            &mut a,
            json!([{"broadcast": {"room": "chat.1", "data": "hello b", "except_self": true}}]),
        )
        .await;
        let got = tokio::time::timeout(Duration::from_millis(200), next(&mut b)).await;
        if let Ok(Some(m)) = got {
            assert_eq!(m.as_text(), Some("hello b"));
            break;
        }
        assert!(Instant::now() < deadline, "broadcast never crossed nodes");
    }
    act(
        &mut a,
        json!([{"to_user": {"user_id": "2", "data": "user two"}}]),
    )
    .await;
    assert_eq!(next_text(&mut b).await, "user two");
    act(
        &mut a,
        json!([{"to_socket": {"socket_id": b_id, "data": "socket b"}}]),
    )
    .await;
    assert_eq!(next_text(&mut b).await, "socket b");
    act(
        &mut b,
        json!([{"to_socket": {"socket_id": a_id, "data": "socket a"}}]),
    )
    .await;
    assert_eq!(next_text(&mut a).await, "socket a");

    // The socket API on node one for a socket on node two.
    let (s, _) = api(
        one.addr,
        "POST",
        &format!("/apps/{APP_ID}/sockets/{b_id}/send"),
        "",
        r#"{"data":"via api"}"#,
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(next_text(&mut b).await, "via api");
    let (s, _) = api(
        one.addr,
        "POST",
        &format!("/apps/{APP_ID}/sockets/{b_id}/actions"),
        "",
        &json!({"actions": [{"join": "side"}, {"send": "joined side"}]}).to_string(),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(next_text(&mut b).await, "joined side");
    api(
        one.addr,
        "POST",
        &format!("/apps/{APP_ID}/rooms/side/broadcast"),
        "",
        r#"{"data":"side news"}"#,
    )
    .await;
    assert_eq!(next_text(&mut b).await, "side news");
    api(
        one.addr,
        "POST",
        &format!("/apps/{APP_ID}/sockets/{b_id}/close"),
        "",
        r#"{"code":4002,"reason":"remote"}"#,
    )
    .await;
    let frame = next(&mut b).await.unwrap();
    assert_eq!(frame.as_close().map(|(c, _)| u16::from(c)), Some(4002));
    let close = app.next("close").await;
    assert_eq!(close.body["socket_id"], b_id.as_str());
    // A socket the cluster does not know: best effort, 200.
    let (s, _) = api(
        one.addr,
        "POST",
        &format!("/apps/{APP_ID}/sockets/1.1/send"),
        "",
        r#"{"data":"x"}"#,
    )
    .await;
    assert_eq!(s, 200);
    one.shutdown().await;
    two.shutdown().await;
}

/// The next Pusher message as JSON (`data` decoded when it is a string).
async fn pusher_event(client: &mut Client) -> Value {
    let text = next_text(client).await;
    let mut v: Value = serde_json::from_str(&text).unwrap();
    if let Some(data) = v.get("data").and_then(Value::as_str)
        && let Ok(decoded) = serde_json::from_str::<Value>(data)
    {
        v["data"] = decoded;
    }
    v
}

/// A pusher-protocol client subscribed to `channel` (private, signed).
async fn pusher_on(addr: SocketAddr, channel: &str) -> (Client, String) {
    let mut c = connect(
        addr,
        "/app/resonance-key?protocol=7&client=js&version=8.4.0",
    )
    .await;
    let v = pusher_event(&mut c).await;
    let id = v["data"]["socket_id"].as_str().unwrap().to_string();
    let sub = json!({"event": "pusher:subscribe", "data": {"channel": channel, "auth": private_auth(&id, channel)}});
    send_text(&mut c, &sub.to_string()).await;
    loop {
        let v = pusher_event(&mut c).await;
        if v["event"] == "pusher_internal:subscription_succeeded" {
            break;
        }
    }
    (c, id)
}

#[tokio::test]
async fn the_client_event_hook_relays_replaces_and_drops() {
    let script: Script = Arc::new(|call: &Call| {
        let event = call.body["event"].as_str().unwrap_or("");
        match event {
            "client-replace" => ok(json!({"data": {"replaced": true}})),
            "client-deny" => answer(403, "{}"),
            "client-broken" => answer(500, "{}"),
            _ => answer(204, ""),
        }
    });
    let mut app = App::start(script).await;
    let mut config = config();
    config.apps[0].client_event_hook = Some(app.url());
    config.validate().unwrap();
    let server = serve(config).await;
    let (mut a, a_id) = pusher_on(server.addr, "private-room").await;
    let (mut b, _) = pusher_on(server.addr, "private-room").await;
    let whisper = |name: &str, data: Value| {
        json!({"event": name, "channel": "private-room", "data": data}).to_string()
    };
    send_text(&mut a, &whisper("client-deny", json!({"n": 1}))).await;
    send_text(&mut a, &whisper("client-broken", json!({"n": 2}))).await;
    send_text(&mut a, &whisper("client-replace", json!({"n": 3}))).await;
    for _ in 0..3 {
        let call = app.next("client_event").await;
        assert_eq!(call.body["channel"], "private-room");
        assert_eq!(call.body["socket_id"], a_id.as_str());
        assert!(call.body["data"]["n"].is_u64(), "{:?}", call.body);
        assert_eq!(
            call.signature,
            resonance::signing::hmac_sha256_hex(SECRET, &call.raw)
        );
    }
    let v = pusher_event(&mut b).await;
    assert_eq!(
        v["event"], "client-replace",
        "denied and failed events are dropped"
    );
    assert_eq!(v["data"], json!({"replaced": true}));
    send_text(&mut a, &whisper("client-plain", json!({"n": 4}))).await;
    let v = pusher_event(&mut b).await;
    assert_eq!(
        (v["event"].as_str(), &v["data"]),
        (Some("client-plain"), &json!({"n": 4}))
    );
    assert!(metric(server.addr, "client_event_hook_failed").await >= 1);
    assert!(metric(server.addr, "client_event_hook_dropped").await >= 1);
    server.shutdown().await;
}
