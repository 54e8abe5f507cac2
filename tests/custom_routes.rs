//! Custom WebSocket routes through the library API, against a real server
//! on a free port: both handler styles, rooms through the hub, the HTTP
//! API reaching raw connections, subprotocols, origins, authenticators,
//! HTTP routes, and shutdown.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::*;
use futures_util::SinkExt;
use resonance::custom::{
    Callbacks, Conn, HttpAuthenticator, Message, Refusal, Route, WebSocket, auth, http,
};
use resonance::server::Server;
use tokio_websockets::Message as WsMessage;

/// Relays each message to the rest of its room; says who it is on "whoami".
struct Relay;

impl Callbacks for Relay {
    async fn on_message(&self, conn: &Conn, message: Message) {
        if message.as_text() == Some("whoami") {
            conn.send(format!("{} {}", conn.id(), conn.user().unwrap_or("-")));
            return;
        }
        if let Some(room) = conn.param("room") {
            conn.broadcast(room, message).expect("valid room");
        }
    }
}

fn relay_route() -> Route {
    Route::callbacks(Relay)
        .room_param("room")
        .authenticator(auth::from_fn(|req| Ok(req.query_param("user"))))
}

/// Sentinel instead of a fixed wait: `emit` queues on the connection's own outbox, behind
/// whatever an earlier in-process fan-out queued there, so the next frame must be the sentinel.
async fn assert_nothing_before_sentinel(server: &Running, client: &mut Client, id: &str) {
    let socket = resonance::core::connection::SocketId::parse(id).expect("a socket id");
    assert!(
        server.rooms.emit(&socket, "sentinel"),
        "{id} is not connected"
    );
    assert_eq!(
        next_text(client).await,
        "sentinel",
        "{id} got something before the sentinel"
    );
}

async fn whoami(client: &mut Client) -> (String, String) {
    send_text(client, "whoami").await;
    let text = next_text(client).await;
    let (id, user) = text.split_once(' ').expect("id and user");
    (id.to_string(), user.to_string())
}

#[tokio::test]
async fn echo_round_trips_text_binary_and_fragmented_messages() {
    let server = start(Server::builder(config()).route("/echo", Route::echo().frame_size(4))).await;
    let mut client = connect(server.addr, "/echo").await;
    send_text(&mut client, "héllo").await;
    assert_eq!(next_text(&mut client).await, "héllo");
    client
        .send(WsMessage::binary(vec![0u8, 159, 255]))
        .await
        .unwrap();
    let m = next(&mut client).await.unwrap();
    assert!(m.is_binary());
    assert_eq!(&*m.into_payload(), &[0u8, 159, 255]);

    // By hand: a message in three fragments comes back whole, and the
    // server's answer is itself fragmented into 4-byte frames.
    let (raw, head) = Raw::connect(server.addr, "/echo", "").await;
    let mut raw = raw.unwrap_or_else(|| panic!("upgrade refused: {head}"));
    raw.frame(0x01, b"abc", true).await; // text, not final
    raw.frame(0x00, b"def", true).await; // continuation
    raw.frame(0x80, b"gh", true).await; // final continuation
    let mut frames = Vec::new();
    loop {
        let (fin, opcode, payload) = raw.read().await.expect("a frame");
        frames.push((opcode, payload));
        if fin {
            break;
        }
    }
    assert_eq!(frames[0].0, 0x1, "first fragment is text");
    assert!(
        frames[1..].iter().all(|(op, _)| *op == 0x0),
        "then continuations"
    );
    let whole: Vec<u8> = frames.into_iter().flat_map(|(_, p)| p).collect();
    assert_eq!(whole, b"abcdefgh");
    assert!(
        whole.len() > 4,
        "more than one frame was needed, so fragmentation was exercised"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn rooms_broadcast_emit_users_and_the_http_api() {
    let server = start(Server::builder(config()).route("/chat/{room}", relay_route())).await;
    let mut a = connect(server.addr, "/chat/r1?user=alice").await;
    let mut b = connect(server.addr, "/chat/r1?user=bob").await;
    let mut c = connect(server.addr, "/chat/r1?user=carol").await;
    let mut d = connect(server.addr, "/chat/r2?user=alice").await;
    let (a_id, a_user) = whoami(&mut a).await;
    let (b_id, _) = whoami(&mut b).await;
    let (c_id, _) = whoami(&mut c).await;
    let (d_id, _) = whoami(&mut d).await;
    assert_eq!(a_user, "alice");
    assert_eq!(server.rooms.size("r1"), 3);

    // The sender's room, minus the sender; other rooms hear nothing.
    send_text(&mut a, "hi room").await;
    assert_eq!(next_text(&mut b).await, "hi room");
    assert_eq!(next_text(&mut c).await, "hi room");
    assert_nothing_before_sentinel(&server, &mut a, &a_id).await;
    assert_nothing_before_sentinel(&server, &mut d, &d_id).await;

    // An exclusion list, binary payloads.
    let ids = |s: &str| resonance::core::connection::SocketId::parse(s).unwrap();
    server
        .rooms
        .broadcast("r1", vec![1u8, 2, 3], &[ids(&a_id), ids(&b_id)])
        .unwrap();
    let m = next(&mut c).await.unwrap();
    assert!(m.is_binary());
    assert_eq!(&*m.into_payload(), &[1u8, 2, 3]);
    assert_nothing_before_sentinel(&server, &mut a, &a_id).await;
    assert_nothing_before_sentinel(&server, &mut b, &b_id).await;

    // One connection by id.
    assert!(server.rooms.emit(&ids(&c_id), "just you"));
    assert_eq!(next_text(&mut c).await, "just you");
    assert_nothing_before_sentinel(&server, &mut b, &b_id).await;
    assert!(!server.rooms.emit(&ids("1.2"), "nobody"));

    // Every connection of a user (alice has two, in different rooms).
    server.rooms.to_user("alice", "for alice").unwrap();
    assert_eq!(next_text(&mut a).await, "for alice");
    assert_eq!(next_text(&mut d).await, "for alice");
    assert_nothing_before_sentinel(&server, &mut b, &b_id).await;

    // Everyone but one.
    assert_eq!(server.rooms.broadcast_all("all", &[ids(&c_id)]), 3);
    for client in [&mut a, &mut b, &mut d] {
        assert_eq!(next_text(client).await, "all");
    }
    assert_nothing_before_sentinel(&server, &mut c, &c_id).await;

    // The Pusher HTTP API: a trigger on the room's channel reaches raw
    // connections as the JSON envelope; on a user's channel, that user.
    let (status, body) = trigger(server.addr, "r2", "greet", "{\"n\":1}").await;
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&next_text(&mut d).await).unwrap();
    assert_eq!(v["event"], "greet");
    assert_eq!(v["channel"], "r2");
    assert_eq!(v["data"], "{\"n\":1}");
    // HTTP triggers fan out on a lane task: a second event on r2 (same lane) reaching d means the
    // first one's fan-out is done; then nothing may be queued before a's sentinel.
    let (status, _) = trigger(server.addr, "r2", "sentinel", "{}").await;
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&next_text(&mut d).await).unwrap();
    assert_eq!(v["event"], "sentinel");
    assert_nothing_before_sentinel(&server, &mut a, &a_id).await;
    let (status, _) = trigger(server.addr, "#server-to-user-bob", "ping", "\"x\"").await;
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&next_text(&mut b).await).unwrap();
    assert_eq!(v["event"], "ping");
    let (status, _) = trigger(server.addr, "#server-to-user-bob", "sentinel", "{}").await;
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&next_text(&mut b).await).unwrap();
    assert_eq!(v["event"], "sentinel");
    assert_nothing_before_sentinel(&server, &mut c, &c_id).await;

    // Leaving: the room forgets a closed connection.
    drop(c);
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    while server.rooms.size("r1") != 2 {
        assert!(tokio::time::Instant::now() < deadline, "room never shrank");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.shutdown().await;
}

#[tokio::test]
async fn invalid_rooms_are_refused_before_the_upgrade() {
    let server = start(Server::builder(config()).route("/chat/{room}", relay_route())).await;
    let (raw, head) = Raw::connect(server.addr, "/chat/presence-x", "").await;
    assert!(raw.is_none());
    assert!(head.starts_with("HTTP/1.1 403"), "{head}");
    let (raw, head) = Raw::connect(server.addr, "/chat/a%20b", "").await;
    assert!(raw.is_none());
    assert!(head.starts_with("HTTP/1.1 400"), "{head}");
    server.shutdown().await;
}

#[tokio::test]
async fn task_style_timeouts_and_close_codes() {
    let route = Route::task(|mut ws: WebSocket| async move {
        ws.send("say something");
        match ws.recv_timeout(Duration::from_millis(300)).await {
            Ok(Some(m)) => {
                ws.send(format!("you said {}", m.as_text().unwrap_or("binary")));
                ws.close(4001, "done talking");
            }
            Ok(None) => {}
            Err(_) => ws.close(4008, "too slow"),
        }
        // Keep the task alive until the close completes.
        while ws.recv().await.is_some() {}
    });
    let server = start(Server::builder(config()).route("/talk", route)).await;

    let (raw, _) = Raw::connect(server.addr, "/talk", "").await;
    let mut raw = raw.unwrap();
    let (_, op, payload) = raw.read().await.unwrap();
    assert_eq!((op, payload.as_slice()), (0x1, &b"say something"[..]));
    raw.frame(0x81, b"yes", true).await;
    let (_, _, payload) = raw.read().await.unwrap();
    assert_eq!(payload, b"you said yes");
    assert_eq!(raw.close_code().await, Some((4001, "done talking".into())));

    let (raw, _) = Raw::connect(server.addr, "/talk", "").await;
    let mut raw = raw.unwrap();
    assert_eq!(raw.close_code().await, Some((4008, "too slow".into())));
    server.shutdown().await;
}

#[tokio::test]
async fn a_returning_task_closes_normally() {
    let route = Route::task(|ws: WebSocket| async move {
        ws.send("bye");
    });
    let server = start(Server::builder(config()).route("/once", route)).await;
    let (raw, _) = Raw::connect(server.addr, "/once", "").await;
    let mut raw = raw.unwrap();
    assert_eq!(raw.read().await.unwrap().2, b"bye");
    assert_eq!(raw.close_code().await, Some((1000, String::new())));
    server.shutdown().await;
}

#[tokio::test]
async fn subprotocols_first_supported_wins() {
    let route = Route::task(|mut ws: WebSocket| async move {
        let protocol = ws.protocol().unwrap_or("none").to_string();
        ws.send(protocol);
        while ws.recv().await.is_some() {}
    })
    .protocols(["chat.v2", "chat.v1"]);
    let server = start(Server::builder(config()).route("/p", route)).await;
    let (raw, head) = Raw::connect(
        server.addr,
        "/p",
        "Sec-WebSocket-Protocol: chat.v1, chat.v2\r\n",
    )
    .await;
    let lower = head.to_ascii_lowercase();
    assert!(lower.contains("sec-websocket-protocol: chat.v2"), "{head}");
    assert_eq!(raw.unwrap().read().await.unwrap().2, b"chat.v2");
    let (raw, head) = Raw::connect(server.addr, "/p", "Sec-WebSocket-Protocol: mqtt\r\n").await;
    assert!(
        !head.to_ascii_lowercase().contains("sec-websocket-protocol"),
        "{head}"
    );
    assert_eq!(raw.unwrap().read().await.unwrap().2, b"none");
    server.shutdown().await;
}

#[tokio::test]
async fn origins_are_checked_per_route() {
    let server = start(
        Server::builder(config())
            .route("/strict", Route::echo().origins(["https://*.good.example"]))
            .route("/open", Route::echo()),
    )
    .await;
    let (raw, head) =
        Raw::connect(server.addr, "/strict", "Origin: https://evil.example\r\n").await;
    assert!(raw.is_none() && head.starts_with("HTTP/1.1 403"), "{head}");
    let (raw, _) = Raw::connect(
        server.addr,
        "/strict",
        "Origin: https://app.good.example\r\n",
    )
    .await;
    assert!(raw.is_some());
    let (raw, _) = Raw::connect(server.addr, "/open", "Origin: https://evil.example\r\n").await;
    assert!(raw.is_some(), "the default app allows every origin");
    server.shutdown().await;
}

#[tokio::test]
async fn authenticators_refuse_with_http_statuses() {
    let route = Route::echo().authenticator(auth::from_fn(|req| match req.header("x-token") {
        Some("good") => Ok(Some("u1".into())),
        Some(_) => Err(Refusal::forbidden("bad token")),
        None => Err(Refusal::unauthorized("no token")),
    }));
    let server = start(Server::builder(config()).route("/secure", route)).await;
    let (raw, head) = Raw::connect(server.addr, "/secure", "").await;
    assert!(raw.is_none() && head.starts_with("HTTP/1.1 401"), "{head}");
    let (raw, head) = Raw::connect(server.addr, "/secure", "X-Token: nope\r\n").await;
    assert!(raw.is_none() && head.starts_with("HTTP/1.1 403"), "{head}");
    let (raw, _) = Raw::connect(server.addr, "/secure", "X-Token: good\r\n").await;
    assert!(raw.is_some());
    server.shutdown().await;
}

/// A small stand-in for the web app's auth endpoint: a real HTTP server
/// that knows one session cookie.
async fn auth_app() -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    use http_body_util::Full;
    use hyper::service::service_fn;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let counter = counter.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    counter.fetch_add(1, Ordering::SeqCst);
                    let cookie = req
                        .headers()
                        .get("cookie")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_string();
                    async move {
                        let (status, body) = if req.method() != hyper::Method::POST {
                            (405, "{}")
                        } else if cookie.contains("session=s3cret") {
                            (200, r#"{"user_id": 42}"#)
                        } else {
                            (401, "{}")
                        };
                        let mut r = hyper::Response::new(Full::new(bytes::Bytes::from(body)));
                        *r.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
                        Ok::<_, std::convert::Infallible>(r)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, calls)
}

#[tokio::test]
async fn http_authenticator_forwards_cookies_to_the_app() {
    let (app, calls) = auth_app().await;
    let who = Route::task(|mut ws: WebSocket| async move {
        ws.send(ws.user().unwrap_or("-").to_string());
        while ws.recv().await.is_some() {}
    })
    .authenticator(HttpAuthenticator::new(&format!("http://{app}/ws-auth")).unwrap());
    let server = start(Server::builder(config()).route("/me", who)).await;
    let (raw, head) =
        Raw::connect(server.addr, "/me", "Cookie: theme=dark; session=s3cret\r\n").await;
    let mut raw = raw.unwrap_or_else(|| panic!("refused: {head}"));
    assert_eq!(raw.read().await.unwrap().2, b"42");
    let (raw, head) = Raw::connect(server.addr, "/me", "Cookie: session=wrong\r\n").await;
    assert!(raw.is_none() && head.starts_with("HTTP/1.1 401"), "{head}");
    assert_eq!(calls.load(Ordering::SeqCst), 2);

    // An app that is down: 503, never a socket.
    let down = Route::echo().authenticator(
        HttpAuthenticator::new("http://127.0.0.1:9/ws-auth")
            .unwrap()
            .timeout(Duration::from_secs(1)),
    );
    let server2 = start(Server::builder(config()).route("/x", down)).await;
    let (raw, head) = Raw::connect(server2.addr, "/x", "").await;
    assert!(raw.is_none() && head.starts_with("HTTP/1.1 503"), "{head}");
    server.shutdown().await;
    server2.shutdown().await;
}

#[tokio::test]
async fn http_routes_beside_the_sockets() {
    let server = start(
        Server::builder(config())
            .get("/", |_| async { http::html("<p>home</p>") })
            .get("/hello/{name}", |req| async move {
                http::text(format!("hello {}", req.params.get("name").unwrap_or("?")))
            })
            .get("/boom", |_| async { panic!("page handler bug") })
            .route("/ws", Route::echo()),
    )
    .await;
    let (status, body) = get(server.addr, "/").await;
    assert_eq!(status, 200);
    assert!(
        body.contains("<p>home</p>") && body.contains("text/html"),
        "{body}"
    );
    let (status, body) = get(server.addr, "/hello/ada").await;
    assert_eq!(status, 200);
    assert!(body.ends_with("hello ada"), "{body}");
    let (status, _) = get(server.addr, "/boom").await;
    assert_eq!(status, 500);
    let (status, _) = get(server.addr, "/ws").await;
    assert_eq!(status, 426, "a socket route asked without an upgrade");
    let (status, _) = get(server.addr, "/up").await;
    assert_eq!(status, 200, "built-in routes still answer");
    let (status, _) = get(server.addr, "/nothing-here").await;
    assert_eq!(status, 404);
    server.shutdown().await;
}

#[tokio::test]
async fn shutdown_closes_raw_connections_with_1001() {
    let server = start(Server::builder(config()).route("/echo", Route::echo())).await;
    let (raw, _) = Raw::connect(server.addr, "/echo", "").await;
    let mut raw = raw.unwrap();
    let addr = server.addr;
    let stopping = tokio::spawn(server.shutdown());
    assert_eq!(
        raw.close_code().await,
        Some((1001, "server shutting down".into()))
    );
    stopping.await.unwrap();
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "listener closed"
    );
}

#[tokio::test]
async fn echo_path_from_the_config_serves_on_the_main_server() {
    let mut c = config();
    c.server.echo_path = Some("/echo".into());
    let server = start_server(Server::bind(c).await.unwrap()).await;
    let mut client = connect(server.addr, "/echo").await;
    send_text(&mut client, "main server").await;
    assert_eq!(next_text(&mut client).await, "main server");
    server.shutdown().await;
}

#[tokio::test]
async fn malformed_routes_fail_bind() {
    let err = Server::builder(config())
        .route("no-slash", Route::echo())
        .bind()
        .await
        .err()
        .expect("refused");
    assert!(err.to_string().contains("no-slash"), "{err}");
    let err = Server::builder(config())
        .route("/x/{id}", Route::echo().room_param("room"))
        .bind()
        .await
        .err()
        .expect("refused");
    assert!(err.to_string().contains("room_param"), "{err}");
}
