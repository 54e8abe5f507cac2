//! `resonance doctor` against real things: the binary on a port that is
//! taken and one that is free, under a low open-file limit, with a real
//! `redis-server` and a dead Redis port, a live and a dead auth endpoint,
//! and certificates made by the `openssl` CLI (valid, expiring within 14
//! days, and expired as seen from a later clock).

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use resonance::config::Config;
use resonance::doctor::{Environment, Level, check};

const BIN: &str = env!("CARGO_BIN_EXE_resonance");

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// Runs `resonance doctor` with only the given RESONANCE_* variables.
fn doctor(vars: &[(&str, String)], args: &[&str]) -> (bool, String) {
    let mut cmd = Command::new(BIN);
    cmd.arg("doctor").args(args);
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("RESONANCE_")) {
        cmd.env_remove(k);
    }
    cmd.envs(vars.iter().map(|(k, v)| (*k, v.as_str())));
    let Output { status, stdout, .. } = cmd.output().expect("run resonance doctor");
    (
        status.success(),
        String::from_utf8_lossy(&stdout).into_owned(),
    )
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("resonance-doctor-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

fn make_cert(dir: &Path, days: u32) -> (String, String) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let status = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=localhost",
        ])
        .arg("-days")
        .arg(days.to_string())
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(Stdio::null())
        .status()
        .expect("the openssl CLI is needed for the doctor tests");
    assert!(status.success(), "openssl req failed");
    (
        cert.to_string_lossy().into_owned(),
        key.to_string_lossy().into_owned(),
    )
}

#[test]
fn a_free_port_is_fine_and_a_taken_one_is_a_problem() {
    let port = free_port();
    let (ok, out) = doctor(&[("RESONANCE_PORT", port.to_string())], &[]);
    assert!(ok, "{out}");
    assert!(out.contains(&format!("127.0.0.1:{port} is free")), "{out}");
    assert!(out.contains("0 problem(s)"), "{out}");

    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().unwrap().port();
    let (ok, out) = doctor(&[], &["--port", &port.to_string()]);
    assert!(!ok, "{out}");
    assert!(
        out.contains(&format!(
            "PROBLEM server.port: 127.0.0.1:{port} is already in use"
        )),
        "{out}"
    );
    assert!(out.contains("fix: "), "{out}");
}

#[test]
fn a_bad_config_is_named() {
    let (ok, out) = doctor(&[("RESONANCE_PORT", "abc".into())], &[]);
    assert!(!ok, "{out}");
    assert!(
        out.contains("PROBLEM configuration: RESONANCE_PORT"),
        "{out}"
    );
}

#[test]
fn the_open_file_limit_must_cover_max_connections() {
    let port = free_port().to_string();
    // `ulimit -n` in sh lowers both the soft and the hard limit.
    let run = |limit: u32| {
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!("ulimit -n {limit} && exec \"$0\" doctor",))
            .arg(BIN)
            .env("RESONANCE_PORT", &port)
            .env("RESONANCE_APP_MAX_CONNECTIONS", "5000")
            .output()
            .expect("sh");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (ok, out) = run(1024);
    assert!(!ok, "{out}");
    assert!(
        out.contains("PROBLEM open-file limit 1024 is below the apps' max_connections (5000)"),
        "{out}"
    );
    assert!(out.contains("LimitNOFILE"), "{out}");
}

#[test]
fn redis_and_auth_endpoints_must_answer() {
    // A dead port for each.
    let dead = free_port();
    let (ok, out) = doctor(
        &[
            ("RESONANCE_PORT", free_port().to_string()),
            (
                "RESONANCE_REDIS_URL",
                format!("redis://:pw@127.0.0.1:{dead}/0"),
            ),
            (
                "RESONANCE_AUTH_ENDPOINT",
                format!("http://127.0.0.1:{dead}/broadcasting/auth"),
            ),
        ],
        &[],
    );
    assert!(!ok, "{out}");
    assert!(
        out.contains("PROBLEM apps[0].redis_url: Redis at redis://:***@127.0.0.1"),
        "{out}"
    );
    assert!(!out.contains(":pw@"), "the password is not printed: {out}");
    assert!(out.contains("PROBLEM apps[0].auth_endpoint"), "{out}");

    // A real redis-server and an endpoint that refuses guests, as Laravel does.
    let redis_port = free_port();
    let mut redis = match Command::new("redis-server")
        .args([
            "--port",
            &redis_port.to_string(),
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(Stdio::null())
        .spawn()
    {
        Ok(child) => child,
        Err(e) => panic!("redis-server is needed for this test: {e}"),
    };
    let auth = TcpListener::bind("127.0.0.1:0").expect("bind");
    let auth_port = auth.local_addr().unwrap().port();
    let answering = std::thread::spawn(move || {
        if let Ok((mut stream, _)) = auth.accept() {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf);
            let _ = stream.write_all(
                b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            );
        }
    });
    // Wait until Redis listens (bounded).
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", redis_port)).is_err() {
        assert!(Instant::now() < deadline, "redis-server did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let (ok, out) = doctor(
        &[
            ("RESONANCE_PORT", free_port().to_string()),
            (
                "RESONANCE_REDIS_URL",
                format!("redis://127.0.0.1:{redis_port}/0"),
            ),
            (
                "RESONANCE_AUTH_ENDPOINT",
                format!("http://127.0.0.1:{auth_port}/broadcasting/auth"),
            ),
        ],
        &[],
    );
    let _ = redis.kill();
    let _ = redis.wait();
    let _ = answering.join();
    assert!(ok, "{out}");
    assert!(out.contains("answers PING"), "{out}");
    assert!(out.contains("answers (HTTP 403 for a guest"), "{out}");
}

#[test]
fn certificates_are_checked_for_their_key_and_expiry() {
    let dir = temp_dir("certs");
    let (cert, key) = make_cert(&dir, 7);
    let port = free_port().to_string();
    let vars = |cert: &str, key: &str| {
        vec![
            ("RESONANCE_PORT", port.clone()),
            ("RESONANCE_TLS_CERT", cert.to_string()),
            ("RESONANCE_TLS_KEY", key.to_string()),
        ]
    };
    let (ok, out) = doctor(&vars(&cert, &key), &[]);
    assert!(!ok, "{out}");
    assert!(out.contains("matches its key"), "{out}");
    assert!(out.contains("PROBLEM server.tls_cert: expires in"), "{out}");

    let long = dir.join("long");
    std::fs::create_dir_all(&long).unwrap();
    let (cert, key) = make_cert(&long, 365);
    let (ok, out) = doctor(&vars(&cert, &key), &[]);
    assert!(ok, "{out}");
    assert!(
        out.contains("ok      server.tls_cert: valid until"),
        "{out}"
    );

    // Another certificate's key does not match.
    let (_, other_key) = make_cert(&dir, 30);
    let (ok, out) = doctor(&vars(&cert, &other_key), &[]);
    assert!(!ok, "{out}");
    assert!(
        out.contains("PROBLEM server.tls_key: does not match"),
        "{out}"
    );

    // The same certificate, a year and a day later: expired.
    let mut config = Config::default();
    config.server.port = 0;
    config.server.tls_cert = Some(cert);
    config.server.tls_key = Some(key);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let later = Environment {
        fd_limit: Some((100_000, 100_000)),
        now: Environment::current().now + 366 * 86_400,
        apps_database: None,
    };
    let findings = runtime.block_on(check(&config, &later));
    let expired = findings
        .iter()
        .find(|f| f.what.contains("expired on"))
        .unwrap_or_else(|| panic!("{findings:?}"));
    assert_eq!(expired.level, Level::Problem);
    let _ = std::fs::remove_dir_all(&dir);
}
