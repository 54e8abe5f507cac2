//! The broker contract the cluster adapter relies on, checked against each
//! real broker: one `redis-server`, a Redis Cluster of three masters, and a
//! `nats-server` with JetStream — each started here on free loopback ports.
//! Pub/sub: a subscription acknowledged is a subscription that receives;
//! an unsubscribed channel stops; channel names with dots and wildcards
//! stay one channel. State: a share rewritten is read back whole; writes
//! and deletes of members land; heartbeats sort nodes into alive and dead;
//! exactly one of two nodes wins a reap, which deletes the dead share.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use resonance::adapter::broker::{self, Broker, Messages, Write, now_ms};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// Child processes killed on drop, and a scratch directory.
struct Procs(Vec<Child>, #[allow(dead_code)] tempdir::Dir);

impl Drop for Procs {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

mod tempdir {
    pub struct Dir(pub std::path::PathBuf);
    impl Dir {
        pub fn new(tag: &str) -> Dir {
            let path = std::env::temp_dir().join(format!(
                "resonance-brokers-{tag}-{}-{:x}",
                std::process::id(),
                rand_suffix()
            ));
            std::fs::create_dir_all(&path).expect("temp dir");
            Dir(path)
        }
    }
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    fn rand_suffix() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
    }
}

/// A free port whose cluster bus port (+10000) is free too.
fn free_cluster_port() -> u16 {
    loop {
        let port = free_port();
        if port < 55_000 && std::net::TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
}

async fn wait_for(what: &str, mut ready: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ready().await {
        assert!(Instant::now() < deadline, "{what} did not come up in 20 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn redis_ping(url: &str) -> bool {
    let Ok(client) = redis::Client::open(url) else {
        return false;
    };
    let Ok(mut c) = client.get_multiplexed_async_connection().await else {
        return false;
    };
    redis::cmd("PING")
        .query_async::<String>(&mut c)
        .await
        .is_ok()
}

fn redis_server(port: u16, dir: &std::path::Path, cluster: bool) -> Child {
    let mut cmd = Command::new("redis-server");
    cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(dir);
    if cluster {
        cmd.args(["--cluster-enabled", "yes"])
            .args(["--cluster-config-file", &format!("nodes-{port}.conf")]);
    }
    cmd.stdout(Stdio::null())
        .spawn()
        .expect("redis-server on PATH")
}

async fn start_redis() -> (Procs, String) {
    let dir = tempdir::Dir::new("redis");
    let port = free_port();
    let child = redis_server(port, &dir.0, false);
    let url = format!("redis://127.0.0.1:{port}/");
    wait_for("redis-server", async || redis_ping(&url).await).await;
    (Procs(vec![child], dir), url)
}

async fn start_redis_cluster() -> (Procs, String) {
    let dir = tempdir::Dir::new("cluster");
    let ports: Vec<u16> = (0..3).map(|_| free_cluster_port()).collect();
    let children = ports
        .iter()
        .map(|p| redis_server(*p, &dir.0, true))
        .collect();
    let procs = Procs(children, dir);
    for p in &ports {
        let url = format!("redis://127.0.0.1:{p}/");
        wait_for("a cluster node", async || redis_ping(&url).await).await;
    }
    let status = Command::new("redis-cli")
        .args(["--cluster", "create"])
        .args(ports.iter().map(|p| format!("127.0.0.1:{p}")))
        .args(["--cluster-replicas", "0", "--cluster-yes"])
        .stdout(Stdio::null())
        .status()
        .expect("redis-cli on PATH");
    assert!(status.success(), "redis-cli --cluster create failed");
    for p in &ports {
        let url = format!("redis://127.0.0.1:{p}/");
        wait_for("cluster_state:ok", async || {
            let Ok(client) = redis::Client::open(url.as_str()) else {
                return false;
            };
            let Ok(mut c) = client.get_multiplexed_async_connection().await else {
                return false;
            };
            redis::cmd("CLUSTER")
                .arg("INFO")
                .query_async::<String>(&mut c)
                .await
                .is_ok_and(|info| info.contains("cluster_state:ok"))
        })
        .await;
    }
    let seeds = ports
        .iter()
        .map(|p| format!("redis://127.0.0.1:{p}"))
        .collect::<Vec<_>>()
        .join(",");
    (procs, seeds)
}

async fn start_nats() -> Option<(Procs, String)> {
    let bin = ["/usr/sbin/nats-server", "/usr/bin/nats-server"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())?;
    let dir = tempdir::Dir::new("nats");
    let port = free_port();
    let child = Command::new(bin)
        .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
        .arg(&dir.0)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nats-server starts");
    let url = format!("nats://127.0.0.1:{port}");
    // Ready when a NATS server greets on the port (not merely something
    // listening there: a parallel test may have taken the port first).
    wait_for("nats-server", async || {
        use tokio::io::AsyncReadExt;
        let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
            return false;
        };
        let mut greeting = [0u8; 4];
        matches!(
            tokio::time::timeout(Duration::from_secs(1), s.read_exact(&mut greeting)).await,
            Ok(Ok(_))
        ) && &greeting == b"INFO"
    })
    .await;
    Some((Procs(vec![child], dir), url))
}

async fn next(messages: &mut Messages) -> (String, Bytes) {
    tokio::time::timeout(Duration::from_secs(5), messages.next())
        .await
        .expect("a message within 5 s")
        .expect("the subscription is alive")
}

fn publish(channel: &str, payload: &str) -> Write {
    Write::Publish {
        channel: channel.into(),
        payload: Bytes::from(payload.to_owned()),
    }
}

/// The whole contract, for one broker kind at `url`.
async fn contract(kind: &str, url: &str) {
    let prefix = format!("t{:x}", now_ms());
    let a: Arc<dyn Broker> = broker::from_settings(kind, url, &prefix, "node-a").unwrap();
    let b: Arc<dyn Broker> = broker::from_settings(kind, url, &prefix, "node-b").unwrap();
    assert_eq!(a.name(), kind);

    // Pub/sub, with a channel name that has dots and wildcard characters.
    let cluster = format!("{prefix}#cluster");
    let odd = format!("{prefix}#ch#app.1#private-room.*.>");
    let reply = format!("{prefix}#reply#node-b");
    let (mut sink, mut messages) = b
        .subscriber(vec![cluster.clone(), reply.clone()])
        .await
        .unwrap();
    sink.subscribe(&[odd.as_str()]).await.unwrap();
    a.write(&[publish(&cluster, "c1"), publish(&odd, "o1")])
        .await
        .unwrap();
    let mut got = vec![next(&mut messages).await, next(&mut messages).await];
    got.sort();
    assert_eq!(
        got,
        {
            let mut want = vec![
                (cluster.clone(), Bytes::from("c1")),
                (odd.clone(), Bytes::from("o1")),
            ];
            want.sort();
            want
        },
        "{kind}: both channels delivered under their own names"
    );
    // A sibling channel the wildcard characters might have matched.
    let sibling = format!("{prefix}#ch#app.1#private-room.x.y");
    a.write(&[publish(&sibling, "no")]).await.unwrap();
    // Unsubscribed: nothing more from it; the cluster channel goes on.
    sink.unsubscribe(&[odd.as_str()]).await.unwrap();
    a.write(&[publish(&odd, "o2"), publish(&cluster, "c2")])
        .await
        .unwrap();
    assert_eq!(
        next(&mut messages).await,
        (cluster.clone(), Bytes::from("c2")),
        "{kind}: no message after unsubscribing, none from a sibling"
    );
    // Order on one channel.
    let burst: Vec<Write> = (0..200)
        .map(|i| publish(&cluster, &i.to_string()))
        .collect();
    a.write(&burst).await.unwrap();
    for i in 0..200 {
        assert_eq!(next(&mut messages).await.1, Bytes::from(i.to_string()));
    }

    // State: shares, heartbeats, reaping.
    let now = now_ms();
    a.rewrite_share(
        vec![("f1".into(), "v1".into()), ("f.2 *".into(), "v2".into())],
        vec![],
        now,
    )
    .await
    .unwrap();
    b.rewrite_share(vec![], vec![], now).await.unwrap();
    a.write(&[
        Write::SetMember {
            field: "f3".into(),
            value: "v3".into(),
        },
        Write::DelMember { field: "f1".into() },
    ])
    .await
    .unwrap();
    let mut share = b.share_of("node-a").await.unwrap();
    share.sort();
    assert_eq!(
        share,
        vec![
            ("f.2 *".to_string(), "v2".to_string()),
            ("f3".to_string(), "v3".to_string())
        ],
        "{kind}: node-a's share as written"
    );
    let (mut alive, dead) = b.nodes(now).await.unwrap();
    alive.sort();
    assert_eq!(alive, vec!["node-a", "node-b"]);
    assert!(dead.is_empty());
    assert!(!a.beat(now + 10).await.unwrap(), "{kind}: a is registered");
    // node-a falls silent: later, it is dead for b.
    b.beat(now + 10_000).await.unwrap();
    let (alive, dead) = b.nodes(now + 5_000).await.unwrap();
    assert_eq!(
        (alive, dead),
        (vec!["node-b".to_string()], vec!["node-a".to_string()])
    );
    // Two reapers, one winner; the winner deletes the share.
    let c: Arc<dyn Broker> = broker::from_settings(kind, url, &prefix, "node-c").unwrap();
    let (won_b, won_c) = tokio::join!(b.reap("node-a"), c.reap("node-a"));
    assert!(
        won_b.unwrap() ^ won_c.unwrap(),
        "{kind}: exactly one reaper wins"
    );
    assert!(b.share_of("node-a").await.unwrap().is_empty());
    let (alive, dead) = b.nodes(now + 5_000).await.unwrap();
    assert_eq!((alive, dead.len()), (vec!["node-b".to_string()], 0));
    // The reaped node notices on its next beat, which does not register
    // it again (only a rewrite of its share does).
    assert!(a.beat(now + 20_000).await.unwrap(), "{kind}: a was reaped");
    let (alive, dead) = b.nodes(0).await.unwrap();
    assert!(
        !alive.contains(&"node-a".to_string()) && !dead.contains(&"node-a".to_string()),
        "{kind}: a beat does not register a reaped node"
    );
    a.rewrite_share(vec![], vec![], now + 20_000).await.unwrap();
    // Leaving removes the node and its share.
    b.write(&[Write::SetMember {
        field: "x".into(),
        value: "y".into(),
    }])
    .await
    .unwrap();
    b.leave().await.unwrap();
    assert!(a.share_of("node-b").await.unwrap().is_empty());
    let (alive, _) = a.nodes(0).await.unwrap();
    assert_eq!(
        alive,
        vec!["node-a"],
        "{kind}: a registered again by its rewrite"
    );
}

#[tokio::test]
async fn redis_broker_keeps_the_contract() {
    let (_redis, url) = start_redis().await;
    contract("redis", &url).await;
}

/// A master and a Sentinel watching it (`redis-server --sentinel`): the
/// broker finds the master through the Sentinel.
#[tokio::test]
async fn redis_broker_through_sentinel_keeps_the_contract() {
    let (mut master, url) = start_redis().await;
    let master_port = url
        .trim_end_matches('/')
        .rsplit(':')
        .next()
        .unwrap()
        .to_string();
    let port = free_port();
    let conf = master.1.0.join("sentinel.conf");
    std::fs::write(
        &conf,
        format!(
            "port {port}\nbind 127.0.0.1\nsentinel monitor mymaster 127.0.0.1 {master_port} 1\n"
        ),
    )
    .unwrap();
    let sentinel = Command::new("redis-server")
        .arg(&conf)
        .arg("--sentinel")
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-server --sentinel");
    master.0.push(sentinel);
    let sentinel_url = format!("redis://127.0.0.1:{port}/");
    wait_for("the Sentinel", async || redis_ping(&sentinel_url).await).await;
    contract(
        "redis",
        &format!("redis+sentinel://127.0.0.1:{port}/mymaster"),
    )
    .await;
}

#[tokio::test]
async fn redis_cluster_broker_keeps_the_contract() {
    let (_cluster, seeds) = start_redis_cluster().await;
    contract("redis-cluster", &seeds).await;
}

#[tokio::test]
async fn nats_broker_keeps_the_contract() {
    let Some((_nats, url)) = start_nats().await else {
        eprintln!("nats-server not installed: skipped");
        return;
    };
    contract("nats", &url).await;
}

#[tokio::test]
async fn a_subscription_ends_when_the_broker_goes_away() {
    for kind in ["redis", "nats"] {
        let (procs, url) = match kind {
            "redis" => start_redis().await,
            _ => match start_nats().await {
                Some(n) => n,
                None => continue,
            },
        };
        let b = broker::from_settings(kind, &url, "gone", "node-b").unwrap();
        let (_sink, mut messages) = b.subscriber(vec!["gone#cluster".into()]).await.unwrap();
        drop(procs);
        let end = tokio::time::timeout(Duration::from_secs(10), messages.next()).await;
        assert!(
            matches!(end, Ok(None)),
            "{kind}: the stream ends once the broker is gone"
        );
    }
}
