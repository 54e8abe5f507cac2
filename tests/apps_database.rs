//! Apps from a real database: PostgreSQL (127.0.0.1:5432, user postgres)
//! and MariaDB/MySQL (127.0.0.1:3306, root), each in a throwaway database
//! created and dropped by the test (skipped with a message when the server
//! is absent). The server reads the table through a TCP proxy the test owns,
//! so that "the database goes down" is the proxy closing — the machine's
//! database is never touched.
//!
//! Checked: an app present at start serves at once; an app added in the
//! table connects within seconds (at once on PostgreSQL, by NOTIFY);
//! disabling closes its connections with 4003, deleting with 4001; a bad
//! row is skipped and the rows after it still load; with the database
//! unreachable the last known apps keep serving and `/ready` and
//! `/metrics` say so.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use resonance::apps::db::AppsDb;
use resonance::core::app::AppConfig;
use resonance::server::Server;
use tokio::net::{TcpListener, TcpStream};

/// A TCP proxy to the database that the test can cut.
struct Proxy {
    port: u16,
    tasks: Arc<parking_lot::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl Proxy {
    async fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("proxy bind");
        let port = listener.local_addr().expect("addr").port();
        let tasks = Arc::new(parking_lot::Mutex::new(Vec::new()));
        let pipes = tasks.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let pipe = tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                pipes.lock().push(pipe);
            }
        });
        tasks.lock().push(accept);
        Proxy { port, tasks }
    }

    /// Stops accepting and cuts every piped connection.
    fn cut(&self) {
        for task in self.tasks.lock().drain(..) {
            task.abort();
        }
    }
}

fn unique_name() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("resonance_test_{}_{nanos}", std::process::id())
}

/// Reads until the close frame; the pusher:error code and the close code.
async fn closed_with(client: &mut Client) -> (Option<u64>, Option<u16>) {
    let mut error = None;
    loop {
        let Some(m) = next(client).await else {
            return (error, None);
        };
        if let Some((code, _)) = m.as_close() {
            return (error, Some(u16::from(code)));
        }
        if let Some(text) = m.as_text() {
            let v: serde_json::Value = serde_json::from_str(text).expect("json");
            if v["event"] == "pusher:error" {
                let data: serde_json::Value = match &v["data"] {
                    serde_json::Value::String(s) => serde_json::from_str(s).expect("data"),
                    other => other.clone(),
                };
                error = data["code"].as_u64();
            }
        }
    }
}

/// Connects to app `key`: `Ok` once established, `Err(code)` if refused.
async fn try_app(addr: SocketAddr, key: &str) -> Result<Client, Option<u64>> {
    let mut client = connect(addr, &format!("/app/{key}?protocol=7")).await;
    let first = next_text(&mut client).await;
    if first.contains("pusher:connection_established") {
        return Ok(client);
    }
    let v: serde_json::Value = serde_json::from_str(&first).expect("json");
    let data: serde_json::Value =
        serde_json::from_str(v["data"].as_str().unwrap_or("{}")).unwrap_or_default();
    Err(data["code"].as_u64())
}

/// Retries `try_app` until the app is served (the server reads the table
/// by itself), failing after `within`. Returns the client and how long it
/// took.
async fn served_within(addr: SocketAddr, key: &str, within: Duration) -> (Client, Duration) {
    let start = Instant::now();
    loop {
        match try_app(addr, key).await {
            Ok(client) => return (client, start.elapsed()),
            Err(code) if start.elapsed() < within => {
                assert!(
                    matches!(code, Some(4001 | 4100)),
                    "{key}: refused with {code:?}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(code) => panic!("{key} not served within {within:?} (last refusal {code:?})"),
        }
    }
}

/// The whole story against one database; `sql` runs a statement on it.
async fn exercise(kind: &str, db_url: &str, target: SocketAddr, proxied_url: &str) {
    let db = AppsDb::open(db_url).expect("open");
    db.migrate().await.expect("migrate");
    let row = |id: &str, secret: &str| resonance::apps::db::Row {
        id: id.into(),
        key: format!("{kind}-key-{id}"),
        secret: secret.into(),
        enabled: true,
        options: Some("{}".into()),
    };
    db.insert(&row("10", "secret-ten")).await.expect("insert");

    let proxy = Proxy::start(target).await;
    let mut config = common::config();
    config.apps = vec![AppConfig {
        id: "1".into(),
        key: "file-key".into(),
        secret: "file-secret".into(),
        ..AppConfig::default()
    }];
    config.apps_database = Some(proxied_url.replace("{port}", &proxy.port.to_string()));
    config.apps_database_poll = 1;
    let running = start_server(Server::bind(config).await.expect("bind")).await;
    let addr = running.addr;

    // Present at start: served at once.
    let mut ten = try_app(addr, &format!("{kind}-key-10"))
        .await
        .expect("app from the table at start");
    let _file = try_app(addr, "file-key").await.expect("the file's app");

    // Added while running.
    db.insert(&row("11", "secret-eleven"))
        .await
        .expect("insert");
    let (mut eleven, took) =
        served_within(addr, &format!("{kind}-key-11"), Duration::from_secs(10)).await;
    eprintln!("{kind}: an app added in the table was served after {took:?}");

    // Disabled → 4003; deleted → 4001.
    sql(
        kind,
        db_url,
        "UPDATE resonance_apps SET enabled = FALSE WHERE id = '11'",
    )
    .await;
    assert_eq!(closed_with(&mut eleven).await, (Some(4003), Some(4003)));
    assert_eq!(
        try_app(addr, &format!("{kind}-key-11")).await.err(),
        Some(Some(4003))
    );
    assert!(db.remove("10").await.expect("delete"));
    assert_eq!(closed_with(&mut ten).await, (Some(4001), Some(4001)));

    // A bad row is skipped; the good row after it loads.
    db.insert(&row("12", "short")).await.expect("insert");
    db.insert(&row("13", "secret-thirteen"))
        .await
        .expect("insert");
    let (thirteen, _) =
        served_within(addr, &format!("{kind}-key-13"), Duration::from_secs(10)).await;
    drop(thirteen);
    assert_eq!(
        try_app(addr, &format!("{kind}-key-12")).await.err(),
        Some(Some(4001))
    );
    // A served app whose row goes bad keeps its last good settings (row
    // 14, added after the bad edit, tells when the edit was read).
    let mut thirteen = try_app(addr, &format!("{kind}-key-13")).await.expect("13");
    sql(
        kind,
        db_url,
        "UPDATE resonance_apps SET secret = 'short' WHERE id = '13'",
    )
    .await;
    db.insert(&row("14", "secret-fourteen"))
        .await
        .expect("insert");
    let _ = served_within(addr, &format!("{kind}-key-14"), Duration::from_secs(10)).await;
    send_text(&mut thirteen, r#"{"event":"pusher:ping","data":{}}"#).await;
    assert!(
        next_text(&mut thirteen).await.contains("pusher:pong"),
        "13 stays connected"
    );
    drop(thirteen);

    // The database goes away: the last known apps keep serving.
    let (status, body) = get(addr, "/ready").await;
    assert_eq!(status, 200);
    assert!(body.contains(r#""apps_database":"connected""#), "{body}");
    proxy.cut();
    let start = Instant::now();
    while !get(addr, "/ready")
        .await
        .1
        .contains(r#""apps_database":"unavailable""#)
    {
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "/ready does not show the database down"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, body) = get(addr, "/ready").await;
    assert_eq!(status, 200, "a database outage does not fail readiness");
    assert!(body.contains(r#""degraded":true"#), "{body}");
    let (_, metrics) = get(addr, "/metrics").await;
    assert!(
        metrics.contains(r#"resonance_dependency_up{name="apps_database"} 0"#),
        "{metrics}"
    );
    try_app(addr, &format!("{kind}-key-13"))
        .await
        .expect("a known app keeps serving while the database is down");
    // An unknown key may be an app not read yet: come back later (41xx).
    assert_eq!(try_app(addr, "nobody").await.err(), Some(Some(4100)));
    running.shutdown().await;
}

async fn sql(kind: &str, url: &str, statement: &str) {
    match kind {
        "pg" => {
            let pool = sqlx::PgPool::connect(url).await.expect("connect");
            sqlx::query(statement).execute(&pool).await.expect("sql");
            pool.close().await;
        }
        _ => {
            let pool = sqlx::MySqlPool::connect(url).await.expect("connect");
            sqlx::query(statement).execute(&pool).await.expect("sql");
            pool.close().await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_apps_are_live() {
    let admin = "postgres://postgres@127.0.0.1:5432/postgres";
    let Ok(Ok(pool)) =
        tokio::time::timeout(Duration::from_secs(3), sqlx::PgPool::connect(admin)).await
    else {
        eprintln!("skipped: no PostgreSQL at 127.0.0.1:5432 (user postgres, trust auth)");
        return;
    };
    let name = unique_name();
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&pool)
        .await
        .expect("create database");
    let url = format!("postgres://postgres@127.0.0.1:5432/{name}");
    let proxied = format!("postgres://postgres@127.0.0.1:{{port}}/{name}");
    let target: SocketAddr = "127.0.0.1:5432".parse().expect("addr");
    let outcome = tokio::spawn({
        let url = url.clone();
        async move { exercise("pg", &url, target, &proxied).await }
    })
    .await;
    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&pool)
        .await;
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_apps_are_live() {
    let admin = "mysql://root@127.0.0.1:3306/mysql";
    let Ok(Ok(pool)) =
        tokio::time::timeout(Duration::from_secs(3), sqlx::MySqlPool::connect(admin)).await
    else {
        eprintln!("skipped: no MariaDB/MySQL at 127.0.0.1:3306 (root, no password)");
        return;
    };
    let name = unique_name();
    sqlx::raw_sql(&format!("CREATE DATABASE {name}"))
        .execute(&pool)
        .await
        .expect("create database");
    let url = format!("mysql://root@127.0.0.1:3306/{name}");
    let proxied = format!("mysql://root@127.0.0.1:{{port}}/{name}");
    let target: SocketAddr = "127.0.0.1:3306".parse().expect("addr");
    let outcome = tokio::spawn({
        let url = url.clone();
        async move { exercise("my", &url, target, &proxied).await }
    })
    .await;
    let _ = sqlx::raw_sql(&format!("DROP DATABASE IF EXISTS {name}"))
        .execute(&pool)
        .await;
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}
