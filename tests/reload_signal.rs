//! Reload without a restart on the real binary: `resonance start
//! --pid-file`, then `resonance reload` (SIGHUP) after changing the config
//! file and renewing the TLS certificate in place. New handshakes see the
//! new certificate while an old `wss://` connection stays; an app removed
//! from the file is closed with 4001, an added one connects; a broken
//! config is refused (by `resonance reload` itself, and by the server when
//! signalled directly) with the key at fault, and the running config stays.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio_rustls::rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use tokio_websockets::{Message, WebSocketStream};

const BIN: &str = env!("CARGO_BIN_EXE_resonance");
const WAIT: Duration = Duration::from_secs(10);

type Wss = WebSocketStream<TlsStream<TcpStream>>;

fn openssl_cert(dir: &Path, cn: &str) {
    let status = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args([
            "-subj",
            &format!("/CN={cn}"),
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ])
        .arg("-keyout")
        .arg(dir.join("key.pem"))
        .arg("-out")
        .arg(dir.join("cert.pem"))
        .stderr(Stdio::null())
        .status()
        .expect("the openssl CLI is needed for this test");
    assert!(status.success(), "openssl req failed");
}

fn config_text(dir: &Path, apps: &[&str], extra_server: &str) -> String {
    let mut text = format!(
        "[server]\nhost = \"127.0.0.1\"\nport = 0\nshutdown_grace = 2\ntls_cert = {:?}\ntls_key = {:?}\n{extra_server}\n",
        dir.join("cert.pem"),
        dir.join("key.pem")
    );
    for id in apps {
        text +=
            &format!("[[apps]]\nid = \"{id}\"\nkey = \"key-{id}\"\nsecret = \"secret-of-{id}\"\n");
    }
    text
}

#[derive(Debug)]
struct AnyCert;

impl ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, tokio_rustls::rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, tokio_rustls::rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }
    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, tokio_rustls::rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        tokio_rustls::rustls::crypto::ring::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

async fn tls(addr: SocketAddr) -> TlsStream<TcpStream> {
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCert))
        .with_no_client_auth();
    let tcp = TcpStream::connect(addr).await.expect("connect");
    TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("127.0.0.1").expect("name"), tcp)
        .await
        .expect("TLS handshake")
}

/// The certificate a new handshake is served.
async fn served_cert(addr: SocketAddr) -> Vec<u8> {
    let stream = tls(addr).await;
    let (_, session) = stream.get_ref();
    session.peer_certificates().expect("a certificate")[0].to_vec()
}

async fn wss(addr: SocketAddr, key: &str) -> Wss {
    let (client, _) = tokio_websockets::ClientBuilder::new()
        .uri(&format!("wss://{addr}/app/{key}?protocol=7"))
        .expect("uri")
        .connect_on(tls(addr).await)
        .await
        .expect("upgrade");
    client
}

async fn recv(client: &mut Wss) -> Option<Message> {
    match tokio::time::timeout(WAIT, client.next()).await {
        Ok(Some(Ok(m))) => Some(m),
        Ok(_) => None,
        Err(_) => panic!("no message within {WAIT:?}"),
    }
}

async fn established(addr: SocketAddr, key: &str) -> Wss {
    let mut c = wss(addr, key).await;
    let first = recv(&mut c).await.expect("a message");
    let text = first.as_text().unwrap_or_default();
    assert!(text.contains("connection_established"), "{key}: {text}");
    c
}

async fn close_code(client: &mut Wss) -> Option<u16> {
    while let Some(m) = recv(client).await {
        if let Some((code, _)) = m.as_close() {
            return Some(u16::from(code));
        }
    }
    None
}

/// The server's stderr, line by line, for sentinels.
struct Server {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Server {
    fn wait_for(&self, needle: &str) -> String {
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(_) => panic!("the server never logged {needle:?}"),
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // SAFETY: signals the child this test started.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

fn reload(pid_file: &Path, config: Option<&Path>) -> std::process::Output {
    let mut cmd = Command::new(BIN);
    cmd.arg("reload").arg("--pid-file").arg(pid_file);
    if let Some(config) = config {
        cmd.arg("--config").arg(config);
    }
    cmd.env_remove("RESONANCE_CONFIG")
        .output()
        .expect("resonance reload")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_apps_certificate_and_log_filter() {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let dir: PathBuf =
        std::env::temp_dir().join(format!("resonance-reload-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    openssl_cert(&dir, "first");
    let (config, pid_file) = (dir.join("resonance.toml"), dir.join("resonance.pid"));
    std::fs::write(&config, config_text(&dir, &["1", "2"], "")).expect("config");

    let mut child = Command::new(BIN)
        .args(["start", "--config"])
        .arg(&config)
        .arg("--pid-file")
        .arg(&pid_file)
        .env_remove("RESONANCE_LOG")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("start the server");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let server = Server { child, lines };
    let line = server.wait_for("listening on ");
    let addr: SocketAddr = line
        .rsplit("listening on ")
        .next()
        .and_then(|a| a.trim().parse().ok())
        .expect("the address in the log");
    assert!(pid_file.exists(), "the pid file is written");

    let first_cert = served_cert(addr).await;
    let mut kept = established(addr, "key-1").await;
    let mut removed = established(addr, "key-2").await;

    // Renew the certificate in place, remove app 2, add app 3, log debug.
    openssl_cert(&dir, "second");
    std::fs::write(&config, config_text(&dir, &["1", "3"], "log = \"debug\"")).expect("config");
    let out = reload(&pid_file, Some(&config));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let done = server.wait_for("reloaded:");
    assert!(
        done.contains("added [3]") && done.contains("removed [2]"),
        "{done}"
    );
    assert!(done.contains("TLS certificate reloaded"), "{done}");
    assert!(done.contains("log filter now \"debug\""), "{done}");

    assert_ne!(
        served_cert(addr).await,
        first_cert,
        "new handshakes get the new certificate"
    );
    assert_eq!(close_code(&mut removed).await, Some(4001));
    let _added = established(addr, "key-3").await;
    // The connection made before the swap is still up, on its old session.
    kept.send(Message::text(
        r#"{"event":"pusher:ping","data":{}}"#.to_string(),
    ))
    .await
    .expect("send");
    let pong = recv(&mut kept).await.expect("pong");
    assert!(pong.as_text().unwrap_or_default().contains("pusher:pong"));

    // A broken config: `resonance reload --config` refuses to signal ...
    std::fs::write(&config, config_text(&dir, &["1"], "outbox_limit = 0")).expect("config");
    let out = reload(&pid_file, Some(&config));
    assert_eq!(out.status.code(), Some(2));
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("server.outbox_limit"), "{said}");
    // ... and the server, signalled anyway, refuses it and keeps running.
    let out = reload(&pid_file, None);
    assert!(out.status.success());
    let refused = server.wait_for("reload refused");
    assert!(refused.contains("server.outbox_limit"), "{refused}");
    let _still = established(addr, "key-3").await;

    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}
