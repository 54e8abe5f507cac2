//! Laravel's Redis ingestion fans out on the node's ordered lanes: a big
//! channel's fan-out must not delay a small channel's event published
//! right after it. A real server and a real `redis-server` on free ports;
//! the big channel's 20 000 subscribers are in-memory connections whose
//! transport counts writes (20 000 sockets would measure the test machine,
//! not the server).

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use resonance::core::channel::ChannelSpec;
use resonance::core::connection::{Connection, Direct, DirectWrite};
use resonance::pusher::protocol::PUSHER_WIRE;
use resonance::server::Server;
use tokio::sync::Notify;

const BIG_SUBSCRIBERS: usize = 20_000;
const BIG_EVENTS: usize = 200;

/// A transport that accepts every frame and counts them.
#[derive(Default)]
struct Counting(AtomicUsize);

impl DirectWrite for Counting {
    fn try_write(&self, _frame: &Bytes) -> Direct {
        self.0.fetch_add(1, Ordering::SeqCst);
        Direct::Written
    }
}

/// The small channel's subscriber: notes how many big-channel frames had
/// been written when its event arrived.
struct Sentinel {
    big: Arc<Counting>,
    seen_at: AtomicUsize,
    arrived: Notify,
}

impl DirectWrite for Sentinel {
    fn try_write(&self, _frame: &Bytes) -> Direct {
        let _ = self.seen_at.compare_exchange(
            usize::MAX,
            self.big.0.load(Ordering::SeqCst),
            Ordering::SeqCst,
            Ordering::SeqCst,
        );
        self.arrived.notify_one();
        Direct::Written
    }
}

/// A private `redis-server` on a free port, killed on drop.
pub struct RedisServer {
    child: std::process::Child,
    pub url: String,
}

impl RedisServer {
    pub async fn start() -> RedisServer {
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
            let ping = async {
                let client = redis::Client::open(url.as_str()).ok()?;
                let mut c = client.get_multiplexed_async_connection().await.ok()?;
                redis::cmd("PING").query_async::<String>(&mut c).await.ok()
            };
            if ping.await.is_some() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "redis-server did not answer PING"
            );
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

async fn wait_for(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_big_channel_does_not_delay_a_small_one_on_ingestion() {
    let redis = RedisServer::start().await;
    let mut config = common::config();
    config.apps[0].redis_url = Some(redis.url.clone());
    config.apps[0].redis_prefix = "t_".into();
    let server = Server::bind(config).await.expect("bind");
    let node = server.node().clone();
    let hub = node.hubs()[0].clone();
    let running = common::start_server(server).await;
    wait_for("the ingestion to connect", || hub.stats.ingress_connected()).await;

    // Pick a small channel on another lane than the big one: same-lane
    // channels are ordered with each other by design.
    let big_lane = node.lane_of("big");
    let small = (0..64)
        .map(|i| format!("small-{i}"))
        .find(|c| node.lane_of(c) != big_lane)
        .expect("a channel on another lane (the server needs 2+ lanes)");

    let big = Arc::new(Counting::default());
    let mut keep = Vec::with_capacity(BIG_SUBSCRIBERS + 1);
    for _ in 0..BIG_SUBSCRIBERS {
        let conn = Connection::new(&PUSHER_WIRE, 16);
        conn.set_direct(Some(big.clone()));
        hub.subscribe(&conn, &ChannelSpec::parse("big").unwrap(), None, |_| {})
            .expect("subscribe big");
        keep.push(conn);
    }
    let sentinel = Arc::new(Sentinel {
        big: big.clone(),
        seen_at: AtomicUsize::new(usize::MAX),
        arrived: Notify::new(),
    });
    let conn = Connection::new(&PUSHER_WIRE, 16);
    conn.set_direct(Some(sentinel.clone()));
    hub.subscribe(&conn, &ChannelSpec::parse(&small).unwrap(), None, |_| {})
        .expect("subscribe small");
    keep.push(conn);

    // One Redis connection, pipelined: Redis delivers in publish order.
    let client = redis::Client::open(redis.url.as_str()).unwrap();
    let mut publisher = client.get_multiplexed_async_connection().await.unwrap();
    let mut pipe = redis::pipe();
    for n in 0..BIG_EVENTS {
        let payload = format!(r#"{{"event":"Big","data":{{"n":{n}}}}}"#);
        pipe.publish("t_big", payload).ignore();
    }
    pipe.publish(&small, "").ignore(); // not a Laravel message: dropped
    pipe.publish(format!("t_{small}"), r#"{"event":"Small","data":{}}"#)
        .ignore();
    let arrived = sentinel.arrived.notified();
    let t0 = Instant::now();
    pipe.query_async::<()>(&mut publisher).await.unwrap();
    tokio::time::timeout(Duration::from_secs(30), arrived)
        .await
        .expect("the small channel's event arrives");
    let small_after = t0.elapsed();
    let total = BIG_SUBSCRIBERS * BIG_EVENTS;
    wait_for("every big-channel event", || {
        big.0.load(Ordering::SeqCst) >= total
    })
    .await;
    let big_after = t0.elapsed();
    let seen_at = sentinel.seen_at.load(Ordering::SeqCst);
    eprintln!(
        "small event after {small_after:?} with {seen_at}/{total} big frames written; \
         big channel done after {big_after:?}"
    );
    // Inline fan-out would deliver the small event only after all of the
    // big channel's frames were written (and a lane that never yields its
    // worker, after nearly all of them).
    assert!(
        seen_at < total / 2,
        "the small channel waited for the big channel's {BIG_EVENTS} fan-outs"
    );
    assert_eq!(
        big.0.load(Ordering::SeqCst),
        total,
        "no big frame lost or doubled"
    );
    drop(keep);
    running.shutdown().await;
}
