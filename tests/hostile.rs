//! Hostile input against a real server: each offender gets its status or
//! close code, a well-behaved Pusher client keeps its round trip during the
//! attack (a `pusher:ping` answered, never a fixed wait), and memory stays
//! bounded. Numbers (time to drop, RSS, probe latency) are printed with
//! `--nocapture` for the README.

mod common;

use std::time::{Duration, Instant};

use common::*;
use resonance::server::Server;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const PUSHER: &str = "/app/resonance-key";

/// Tests that measure this process's RSS take turns, so that one test's
/// connections do not show up in another's numbers.
static MEASURING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Resident memory of this process (the in-process server), in KiB.
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

async fn start_with(edit: impl FnOnce(&mut resonance::config::Config)) -> Running {
    let mut c = config();
    edit(&mut c);
    start(Server::builder(c)).await
}

/// A Pusher client that has its `connection_established`.
async fn pusher(addr: std::net::SocketAddr) -> Client {
    let mut client = connect(addr, PUSHER).await;
    let hello = next_text(&mut client).await;
    assert!(hello.contains("pusher:connection_established"), "{hello}");
    client
}

/// One `pusher:ping` → `pusher:pong` round trip; its latency.
async fn round_trip(probe: &mut Client) -> Duration {
    let t = Instant::now();
    send_text(probe, r#"{"event":"pusher:ping","data":{}}"#).await;
    let pong = next_text(probe).await;
    assert!(pong.contains("pusher:pong"), "{pong}");
    t.elapsed()
}

/// Median of `n` round trips.
async fn latency(probe: &mut Client, n: usize) -> Duration {
    let mut all = Vec::with_capacity(n);
    for _ in 0..n {
        all.push(round_trip(probe).await);
    }
    all.sort();
    all[n / 2]
}

/// One slowloris socket: with `trickle`, a request head sent one header
/// line every 200 ms and never finished; without, nothing at all. Returns
/// how long the server took to close it (`None`: still open after 5 s).
async fn slowloris(mut stream: TcpStream, trickle: bool) -> Option<Duration> {
    let t = Instant::now();
    if trickle
        && stream
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
            .await
            .is_err()
    {
        return Some(t.elapsed());
    }
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    let mut buf = [0u8; 256];
    while t.elapsed() < Duration::from_secs(5) {
        tokio::select! {
            read = stream.read(&mut buf) => match read {
                Ok(0) | Err(_) => return Some(t.elapsed()),
                Ok(_) => {}
            },
            _ = tick.tick() => {
                if trickle && stream.write_all(b"X-Slow: 1\r\n").await.is_err() {
                    return Some(t.elapsed());
                }
            }
        }
    }
    None
}

#[tokio::test]
async fn slowloris_sockets_are_dropped_after_the_handshake_timeout() {
    let _turn = MEASURING.lock().await;
    let server = start_with(|c| c.server.handshake_timeout = 1).await;
    let mut probe = pusher(server.addr).await;
    let idle = latency(&mut probe, 20).await;
    let rss_before = rss_kib();
    // 200 sockets sending a head one header line at a time, never finishing,
    // and 50 that send nothing at all.
    let mut slow = Vec::new();
    for i in 0..250 {
        let stream = TcpStream::connect(server.addr).await.expect("connect");
        slow.push(tokio::spawn(slowloris(stream, i < 200)));
    }
    let during = latency(&mut probe, 20).await;
    let rss_during = rss_kib();
    let mut dropped = Vec::new();
    for task in slow {
        dropped.extend(task.await.expect("slowloris task"));
    }
    assert_eq!(dropped.len(), 250, "every slowloris socket was dropped");
    let worst = dropped.iter().max().copied().unwrap_or_default();
    assert!(
        worst < Duration::from_secs(3),
        "dropped within the 1 s timeout (+ slack): {worst:?}"
    );
    let after = latency(&mut probe, 20).await;
    println!(
        "slowloris x250 (timeout 1 s): last dropped after {worst:?}; probe p50 idle {idle:?}, during {during:?}, after {after:?}; RSS {rss_before} -> {rss_during} -> {} KiB",
        rss_kib()
    );
    server.shutdown().await;
}

#[tokio::test]
async fn an_oversized_request_head_is_431() {
    let server = start_with(|c| c.server.max_header_bytes = 8192).await;
    let mut probe = pusher(server.addr).await;
    let big = "a".repeat(20_000);
    let (status, text) = http(
        server.addr,
        &format!("GET /up HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\nConnection: close\r\n\r\n"),
    )
    .await;
    assert_eq!(status, 431, "{text}");
    // A head just under the limit still works.
    let ok = "a".repeat(4_000);
    let (status, _) = http(
        server.addr,
        &format!("GET /up HTTP/1.1\r\nHost: x\r\nX-Ok: {ok}\r\nConnection: close\r\n\r\n"),
    )
    .await;
    assert_eq!(status, 200);
    round_trip(&mut probe).await;
    server.shutdown().await;
}

#[tokio::test]
async fn connections_over_the_per_ip_limit_get_429_and_slots_come_back() {
    let server = start_with(|c| c.server.max_connections_per_ip = 3).await;
    let mut a = pusher(server.addr).await;
    let _b = pusher(server.addr).await;
    let _c = pusher(server.addr).await;
    let (raw, head) = Raw::connect(server.addr, PUSHER, "").await;
    assert!(raw.is_none());
    assert!(head.starts_with("HTTP/1.1 429"), "{head}");
    let (status, body) = get(server.addr, "/up").await;
    assert_eq!(status, 429);
    assert!(body.contains("too many connections"), "{body}");
    // The three keep working.
    round_trip(&mut a).await;
    // Closing one frees its slot (the session ends, its guard drops).
    drop(a);
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let (status, _) = get(server.addr, "/up").await;
        if status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "slot never released");
        tokio::task::yield_now().await;
    }
    server.shutdown().await;
}

#[tokio::test]
async fn api_floods_get_429_per_ip_and_per_app() {
    let server = start_with(|c| c.server.api_rate_per_ip = 5).await;
    let mut statuses = Vec::new();
    for _ in 0..20 {
        statuses.push(trigger(server.addr, "c", "e", "{}").await);
    }
    let limited: Vec<_> = statuses.iter().filter(|(s, _)| *s == 429).collect();
    assert!(statuses[0].0 == 200, "{:?}", statuses[0]);
    assert!(limited.len() >= 10, "most of the burst was refused");
    assert!(
        limited[0].1.contains("too many API requests"),
        "{}",
        limited[0].1
    );
    server.shutdown().await;

    let server = start_with(|c| c.apps[0].max_api_rate = 5).await;
    // Strangers' unsigned requests do not use up the app's budget.
    for _ in 0..20 {
        let (status, _) = get(server.addr, "/apps/100000/channels").await;
        assert_eq!(status, 401);
    }
    let (status, body) = trigger(server.addr, "c", "e", "{}").await;
    assert_eq!(status, 200, "{body}");
    let mut limited = Vec::new();
    for _ in 0..20 {
        let (status, body) = trigger(server.addr, "c", "e", "{}").await;
        if status == 429 {
            limited.push(body);
        }
    }
    assert!(limited.len() >= 10, "most of the burst was refused");
    assert!(limited[0].contains("over its API rate"), "{}", limited[0]);
    server.shutdown().await;
}

/// Writes `bytes` over and over (whole frames: a partial write continues
/// where it stopped) without reading anything back, for `budget` or until
/// the server stops reading (backpressure) or closes.
async fn blast(stream: &mut TcpStream, bytes: &[u8], budget: Duration) -> usize {
    let mut sent = 0;
    let mut at = 0;
    let t = Instant::now();
    while t.elapsed() < budget {
        match tokio::time::timeout(Duration::from_millis(200), stream.write(&bytes[at..])).await {
            Ok(Ok(n)) if n > 0 => {
                sent += n;
                at = (at + n) % bytes.len();
            }
            Ok(_) | Err(_) => break,
        }
    }
    sent
}

fn masked(first: u8, payload: &[u8]) -> Vec<u8> {
    let key = [1u8, 2, 3, 4];
    let mut out = vec![first];
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
    }
    out.extend_from_slice(&key);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    out
}

// Two workers, as the server has in production: a flood may take one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ping_flood_from_a_client_that_never_reads_stays_bounded() {
    let _turn = MEASURING.lock().await;
    let server = start_with(|_| {}).await;
    let mut probe = pusher(server.addr).await;
    let idle = latency(&mut probe, 20).await;
    let rss_before = rss_kib();
    let (raw, _) = Raw::connect(server.addr, PUSHER, "").await;
    let mut raw = raw.expect("upgrade");
    let pings: Vec<u8> = (0..500).flat_map(|_| masked(0x89, &[b'p'; 125])).collect();
    let flood = tokio::spawn(async move {
        let sent = blast(&mut raw.stream, &pings, Duration::from_secs(2)).await;
        (sent, raw)
    });
    let during = latency(&mut probe, 20).await;
    let (sent, _raw) = flood.await.expect("flood");
    let rss_during = rss_kib();
    let after = latency(&mut probe, 20).await;
    println!(
        "ping flood: {} KiB of pings sent unread; probe p50 idle {idle:?}, during {during:?}, after {after:?}; RSS {rss_before} -> {rss_during} KiB",
        sent / 1024
    );
    assert!(
        rss_during < rss_before + 16 * 1024,
        "RSS grew from {rss_before} to {rss_during} KiB"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn huge_endless_and_invalid_frames_get_their_close_codes() {
    let server = start_with(|c| c.server.max_message_bytes = 64 * 1024).await;
    let mut probe = pusher(server.addr).await;
    let close = |first: u8, header: Vec<u8>| async move {
        let (raw, _) = Raw::connect(server.addr, PUSHER, "").await;
        let mut raw = raw.expect("upgrade");
        raw.stream.write_all(&[first]).await.expect("write");
        raw.stream.write_all(&header).await.expect("write");
        raw.close_code().await.map(|(code, _)| code)
    };
    // A text frame announcing 2^40 bytes: refused from its header.
    let mut header = vec![0x80 | 127];
    header.extend_from_slice(&(1u64 << 40).to_be_bytes());
    header.extend_from_slice(&[0; 4]);
    assert_eq!(close(0x81, header).await, Some(1009));

    // Fragments that never end: 1009 once past the message limit.
    let (raw, _) = Raw::connect(server.addr, PUSHER, "").await;
    let mut raw = raw.expect("upgrade");
    raw.frame(0x01, &[b'a'; 1000], true).await;
    for _ in 0..100 {
        raw.frame(0x00, &[b'a'; 1000], true).await;
    }
    assert_eq!(raw.close_code().await.map(|c| c.0), Some(1009));

    // Invalid UTF-8, split across fragments.
    let (raw, _) = Raw::connect(server.addr, PUSHER, "").await;
    let mut raw = raw.expect("upgrade");
    raw.frame(0x01, b"{\"a\":\"\xE2\x82", true).await;
    raw.frame(0x80, b"(\"}", true).await;
    assert_eq!(raw.close_code().await.map(|c| c.0), Some(1007));

    round_trip(&mut probe).await;
    server.shutdown().await;
}

#[tokio::test]
async fn deeply_nested_and_huge_json_messages_are_refused_politely() {
    let server = start_with(|c| c.server.max_message_bytes = 256 * 1024).await;
    let mut probe = pusher(server.addr).await;
    let mut offender = pusher(server.addr).await;
    // 100,000 levels of nesting: serde_json's recursion limit refuses it
    // (no stack overflow); the client gets a pusher:error and stays.
    let nested = format!(
        "{{\"event\":\"pusher:subscribe\",\"data\":{}{}}}",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    send_text(&mut offender, &nested).await;
    let answer = next_text(&mut offender).await;
    assert!(answer.contains("pusher:error"), "{answer}");
    // A huge channel_data for presence: refused as a bad subscription.
    let huge = format!(
        r#"{{"event":"pusher:subscribe","data":{{"channel":"presence-x","auth":"k:sig","channel_data":"{}"}}}}"#,
        "x".repeat(200_000)
    );
    send_text(&mut offender, &huge).await;
    let answer = next_text(&mut offender).await;
    assert!(
        answer.contains("error") || answer.contains("subscription_error"),
        "{answer}"
    );
    round_trip(&mut offender).await;
    round_trip(&mut probe).await;
    server.shutdown().await;
}

/// Opens a raw Pusher connection and subscribes it to `channel` as `user`
/// (signed as the app's backend would); returns it once subscribed.
async fn presence_member(addr: std::net::SocketAddr, channel: &str, user: &str) -> Raw {
    let (raw, head) = Raw::connect(addr, PUSHER, "").await;
    let mut raw = raw.unwrap_or_else(|| panic!("upgrade: {head}"));
    let (_, _, hello) = raw.read().await.expect("connection_established");
    let hello: serde_json::Value = serde_json::from_slice(&hello).expect("json");
    let data: serde_json::Value =
        serde_json::from_str(hello["data"].as_str().expect("data string")).expect("data json");
    let socket_id = data["socket_id"].as_str().expect("socket_id");
    let channel_data =
        serde_json::json!({ "user_id": user, "user_info": { "n": user } }).to_string();
    let signature = resonance::signing::hmac_sha256_hex(
        "resonance-secret",
        format!("{socket_id}:{channel}:{channel_data}").as_bytes(),
    );
    let subscribe = serde_json::json!({
        "event": "pusher:subscribe",
        "data": { "channel": channel, "auth": format!("resonance-key:{signature}"), "channel_data": channel_data },
    });
    raw.frame(0x81, subscribe.to_string().as_bytes(), true)
        .await;
    loop {
        let (_, _, payload) = raw.read().await.expect("subscription answer");
        let text = String::from_utf8_lossy(&payload);
        if text.contains("subscription_succeeded") {
            return raw;
        }
        assert!(!text.contains("error"), "{text}");
    }
}

#[tokio::test]
async fn two_thousand_presence_connections_reset_at_once_are_cleaned_up() {
    let _turn = MEASURING.lock().await;
    let server = Server::builder(config()).bind().await.expect("bind");
    let node = server.node().clone();
    let server = start_server(server).await;
    let hub = node.by_id("100000").expect("app").clone();
    let channel = "presence-crowd";
    let mut observer = presence_member(server.addr, channel, "observer").await;
    let mut probe = pusher(server.addr).await;
    let rss_before = rss_kib();
    let mut crowd = Vec::with_capacity(2_000);
    for i in 0..2_000 {
        crowd.push(presence_member(server.addr, channel, &format!("user-{}", i % 20)).await);
    }
    assert_eq!(hub.members(channel).len(), 21);
    let rss_full = rss_kib();
    // RST every one of them at once: SO_LINGER 0, then close.
    let t = Instant::now();
    for raw in crowd {
        raw.stream.set_zero_linger().expect("linger");
        drop(raw);
    }
    // The observer sees each of the 20 users leave...
    let mut removed = std::collections::HashSet::new();
    while removed.len() < 20 {
        let (_, _, payload) = observer.read().await.expect("member events");
        let text = String::from_utf8_lossy(&payload);
        if text.contains("member_removed") {
            let v: serde_json::Value = serde_json::from_str(&text).expect("json");
            let data: serde_json::Value =
                serde_json::from_str(v["data"].as_str().unwrap_or("{}")).expect("data");
            removed.insert(data["user_id"].as_str().unwrap_or("").to_string());
        }
    }
    let all_removed = t.elapsed();
    // ...and the hub forgets every connection (observer and probe remain).
    let deadline = Instant::now() + TIMEOUT;
    while hub.connection_count() > 2 || hub.members(channel).len() > 1 {
        assert!(
            Instant::now() < deadline,
            "{} connections and {} members left",
            hub.connection_count(),
            hub.members(channel).len()
        );
        tokio::task::yield_now().await;
    }
    let cleaned = t.elapsed();
    let p50 = latency(&mut probe, 20).await;
    println!(
        "2,000 presence sockets reset at once: member_removed x20 after {all_removed:?}, hub clean after {cleaned:?}; probe p50 after {p50:?}; RSS {rss_before} -> {rss_full} (2,000 open) -> {} KiB",
        rss_kib()
    );
    assert_eq!(hub.members(channel).len(), 1);
    server.shutdown().await;
}

// Two workers, as the server has in production: a flood may take one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ping_flood_on_a_custom_route_stays_bounded() {
    let _turn = MEASURING.lock().await;
    let server = start_with(|c| {
        c.server.echo_path = Some("/echo".into());
        c.server.write_timeout = 2;
    })
    .await;
    let mut probe = pusher(server.addr).await;
    let rss_before = rss_kib();
    let (raw, head) = Raw::connect(server.addr, "/echo", "").await;
    let mut raw = raw.unwrap_or_else(|| panic!("upgrade: {head}"));
    let pings: Vec<u8> = (0..500).flat_map(|_| masked(0x89, &[b'p'; 125])).collect();
    let flood = tokio::spawn(async move {
        let sent = blast(&mut raw.stream, &pings, Duration::from_secs(2)).await;
        (sent, raw)
    });
    let during = latency(&mut probe, 20).await;
    let (sent, _raw) = flood.await.expect("flood");
    let rss_during = rss_kib();
    println!(
        "custom route ping flood: {} KiB of pings sent unread; probe p50 during {during:?}; RSS {rss_before} -> {rss_during} KiB",
        sent / 1024
    );
    assert!(
        rss_during < rss_before + 16 * 1024,
        "RSS grew from {rss_before} to {rss_during} KiB"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn a_stalled_tls_handshake_is_dropped_after_the_handshake_timeout() {
    let dir = std::env::temp_dir().join(format!("resonance-hostile-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let made = std::process::Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args(["-subj", "/CN=127.0.0.1", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl (CI installs it)");
    assert!(made.status.success(), "{made:?}");
    let server = start_with(|c| {
        c.server.handshake_timeout = 1;
        c.server.tls_cert = Some(cert.display().to_string());
        c.server.tls_key = Some(key.display().to_string());
    })
    .await;
    // One socket says nothing, one stops in the middle of a ClientHello.
    let silent = TcpStream::connect(server.addr).await.expect("connect");
    let mut partial = TcpStream::connect(server.addr).await.expect("connect");
    partial
        .write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
        .await
        .expect("write");
    let (a, b) = tokio::join!(slowloris(silent, false), slowloris(partial, false));
    for dropped in [a, b] {
        let dropped = dropped.expect("dropped");
        assert!(dropped < Duration::from_secs(3), "{dropped:?}");
    }
    println!("stalled TLS handshakes dropped after {a:?} and {b:?}");
    let _ = std::fs::remove_dir_all(&dir);
    server.shutdown().await;
}
