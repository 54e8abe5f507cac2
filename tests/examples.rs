//! The examples in `examples/`, run as programs the way a person runs them
//! (`cargo test` builds them next to the test binaries).

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;

/// A running example, killed when dropped.
struct Example {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Example {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn example_path(name: &str) -> PathBuf {
    // target/<profile>/deps/<this test> → target/<profile>/examples/<name>
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target dir");
    let path = dir.join("examples").join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo test` without a --test filter (it builds the examples) or `cargo build --examples`",
        path.display()
    );
    path
}

async fn run_example(name: &str, extra: &[&str]) -> Example {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let child = Command::new(example_path(name))
        .arg(addr.to_string())
        .args(extra)
        .stdout(Stdio::null())
        .spawn()
        .expect("start example");
    let example = Example { child, addr };
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{name} did not listen on {addr}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    example
}

#[tokio::test]
async fn echo_example_echoes_on_any_path() {
    let echo = run_example("echo", &[]).await;
    for path in ["/", "/some/where"] {
        let mut client = connect(echo.addr, path).await;
        send_text(&mut client, path).await;
        assert_eq!(next_text(&mut client).await, path);
    }
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

#[tokio::test]
async fn chat_example_relays_within_a_room_and_lists_users() {
    let chat = run_example("chat", &[]).await;
    let (status, page) = get(chat.addr, "/").await;
    assert_eq!(status, 200);
    assert!(
        page.contains("new WebSocket("),
        "the page uses the browser API"
    );

    let mut alice = connect(chat.addr, "/chat/lobby?name=alice").await;
    assert_eq!(
        json(&next_text(&mut alice).await)["users"],
        serde_json::json!(["alice"])
    );
    let mut bob = connect(chat.addr, "/chat/lobby?name=bob").await;
    let both = serde_json::json!(["alice", "bob"]);
    assert_eq!(json(&next_text(&mut bob).await)["users"], both);
    assert_eq!(json(&next_text(&mut alice).await)["users"], both);
    let mut carol = connect(chat.addr, "/chat/elsewhere?name=carol").await;
    assert_eq!(
        json(&next_text(&mut carol).await)["users"],
        serde_json::json!(["carol"])
    );

    send_text(&mut alice, "hello bob").await;
    let m = json(&next_text(&mut bob).await);
    assert_eq!(
        (m["type"].as_str(), m["from"].as_str(), m["text"].as_str()),
        (Some("message"), Some("alice"), Some("hello bob"))
    );
    // Sentinels instead of a fixed wait (the example's rooms fan out in process, in order):
    // bob's reply reaches alice after any echo of her own message would have; a user joining
    // carol's room reaches carol after anything from the lobby could have.
    send_text(&mut bob, "sentinel").await;
    let m = json(&next_text(&mut alice).await);
    assert_eq!(
        (m["from"].as_str(), m["text"].as_str()),
        (Some("bob"), Some("sentinel")),
        "alice got something before bob's reply: {m}"
    );
    let _dave = connect(chat.addr, "/chat/elsewhere?name=dave").await;
    assert_eq!(
        json(&next_text(&mut carol).await)["users"],
        serde_json::json!(["carol", "dave"]),
        "carol got something from the lobby"
    );

    drop(bob);
    assert_eq!(
        json(&next_text(&mut alice).await)["users"],
        serde_json::json!(["alice"])
    );

    let (raw, head) = Raw::connect(chat.addr, "/chat/lobby", "").await;
    assert!(
        raw.is_none() && head.starts_with("HTTP/1.1 401"),
        "no name: {head}"
    );

    // Private rooms: the app's per-user channels are refused, a direct
    // message room admits its two members only.
    for path in [
        "/chat/private-App.Models.User.1?name=mallory",
        "/chat/private-dm.alice.bob?name=mallory",
        "/chat/presence-lobby?name=alice",
    ] {
        let (raw, head) = Raw::connect(chat.addr, path, "").await;
        assert!(
            raw.is_none() && head.starts_with("HTTP/1.1 403"),
            "{path}: {head}"
        );
    }
    let (raw, head) = Raw::connect(chat.addr, "/chat/private-dm.alice.bob?name=bob", "").await;
    assert!(raw.is_some(), "bob in his DM room: {head}");
}

#[tokio::test]
async fn notify_example_reaches_one_user_through_the_http_api() {
    let notify = run_example("notify", &[]).await;
    let mut alice = connect(notify.addr, "/notify?user=alice").await;
    let mut bob = connect(notify.addr, "/notify?user=bob").await;
    assert_eq!(json(&next_text(&mut alice).await)["user"], "alice");
    assert_eq!(json(&next_text(&mut bob).await)["user"], "bob");

    let (status, body) = trigger(
        notify.addr,
        "#server-to-user-alice",
        "invoice-paid",
        "{\"id\":7}",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let m = json(&next_text(&mut alice).await);
    assert_eq!(m["event"], "invoice-paid");
    assert_eq!(m["channel"], "#server-to-user-alice");
    assert_eq!(m["data"], "{\"id\":7}");
    // Sentinels instead of a fixed wait: a second event on alice's channel (same fan-out lane, so
    // anything the first one queued for bob is queued by the time alice has it), then one on
    // bob's own channel, which must be the next thing bob gets.
    let (status, _) = trigger(notify.addr, "#server-to-user-alice", "sentinel", "{}").await;
    assert_eq!(status, 200);
    assert_eq!(json(&next_text(&mut alice).await)["event"], "sentinel");
    let (status, _) = trigger(notify.addr, "#server-to-user-bob", "sentinel", "{}").await;
    assert_eq!(status, 200);
    let m = json(&next_text(&mut bob).await);
    assert_eq!(m["event"], "sentinel", "bob got alice's notification: {m}");

    let (raw, head) = Raw::connect(notify.addr, "/notify", "").await;
    assert!(raw.is_none() && head.starts_with("HTTP/1.1 401"), "{head}");
}
