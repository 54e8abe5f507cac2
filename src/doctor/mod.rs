//! `resonance doctor`: checks a config and the machine it is about to run
//! on, and says what to fix — the port is free, the open-file limit covers
//! the connections, Redis, the apps database and every auth endpoint
//! answer, the TLS certificate matches its key and is not about to expire,
//! and no development credentials face the network. Exit status 0 when
//! nothing needs fixing (warnings allowed), 1 otherwise.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::config::Config;

pub mod cert;

/// How long each network check may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);
/// A certificate expiring sooner than this is a problem.
pub const RENEW_WITHIN_DAYS: i64 = 14;
/// File descriptors the server needs besides client connections
/// (listeners, Redis, logs, auth calls).
const FD_RESERVE: u64 = 256;

/// How serious a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Ok,
    Warn,
    Problem,
}

/// One finding: what was checked, and what to do about it.
#[derive(Debug, Clone)]
pub struct Finding {
    pub level: Level,
    pub what: String,
    pub fix: Option<String>,
}

impl Finding {
    fn ok(what: impl Into<String>) -> Self {
        Finding {
            level: Level::Ok,
            what: what.into(),
            fix: None,
        }
    }
    fn warn(what: impl Into<String>, fix: impl Into<String>) -> Self {
        Finding {
            level: Level::Warn,
            what: what.into(),
            fix: Some(fix.into()),
        }
    }
    fn problem(what: impl Into<String>, fix: impl Into<String>) -> Self {
        Finding {
            level: Level::Problem,
            what: what.into(),
            fix: Some(fix.into()),
        }
    }
}

/// The environment the checks read (injectable for tests).
pub struct Environment {
    /// The open-file limit (soft, hard); `None` when unknown.
    pub fd_limit: Option<(u64, u64)>,
    /// Now, Unix seconds.
    pub now: i64,
    /// `RESONANCE_APPS_DATABASE` (apps from a database), when set.
    pub apps_database: Option<String>,
}

impl Environment {
    pub fn current() -> Environment {
        Environment {
            fd_limit: fd_limit(),
            now: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64),
            apps_database: std::env::var("RESONANCE_APPS_DATABASE")
                .ok()
                .filter(|v| !v.is_empty()),
        }
    }
}

fn fd_limit() -> Option<(u64, u64)> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct we pass.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
    (rc == 0).then_some((lim.rlim_cur, lim.rlim_max))
}

/// Runs every check of a loaded config.
pub async fn check(config: &Config, env: &Environment) -> Vec<Finding> {
    let mut out = Vec::new();
    let s = &config.server;
    out.push(Finding::ok(format!(
        "config: {} app(s), adapter {:?}, listening on {}:{}",
        config.apps.len(),
        config.cluster.adapter,
        s.host,
        s.port
    )));
    out.push(port_free(&s.host, s.port, "server.port").await);
    if let Some(listen) = &s.metrics_listen {
        let (host, port) = listen
            .rsplit_once(':')
            .map(|(h, p)| (h.trim_matches(['[', ']']), p.parse().unwrap_or(0)))
            .unwrap_or((listen.as_str(), 0));
        out.push(port_free(host, port, "server.metrics_listen").await);
    }
    out.push(file_descriptors(config, env));
    out.extend(exposure(config));
    match (config.cluster.adapter.as_str(), config.cluster.broker_url()) {
        ("redis" | "redis-cluster", Some(urls)) => {
            for url in crate::adapter::broker::url_list(urls) {
                out.push(redis_reachable(&url, "cluster.redis_url").await);
            }
        }
        ("nats", Some(url)) => out.push(nats_reachable(url).await),
        _ => {}
    }
    for (i, app) in config.apps.iter().enumerate() {
        if let Some(url) = &app.redis_url {
            out.push(redis_reachable(url, &format!("apps[{i}].redis_url")).await);
        }
        if let Some(endpoint) = &app.auth_endpoint {
            out.push(auth_endpoint(endpoint, &format!("apps[{i}].auth_endpoint")).await);
        }
    }
    // The config's `apps_database` (file or RESONANCE_APPS_DATABASE, as
    // `start` reads it) wins over the bare environment variable.
    if let Some(url) = config.apps_database.as_ref().or(env.apps_database.as_ref()) {
        out.push(database_reachable(url).await);
    }
    if let (Some(cert), Some(key)) = (&s.tls_cert, &s.tls_key) {
        out.extend(certificate(cert, key, s.tls_chain.as_deref(), env.now));
    }
    out
}

/// Prints the findings; returns how many problems there are.
pub fn report(findings: &[Finding]) -> (String, usize) {
    let mut text = String::new();
    let mut problems = 0;
    let mut warnings = 0;
    for f in findings {
        let label = match f.level {
            Level::Ok => "ok     ",
            Level::Warn => {
                warnings += 1;
                "warn   "
            }
            Level::Problem => {
                problems += 1;
                "PROBLEM"
            }
        };
        let _ = writeln!(text, "{label} {}", f.what);
        if let Some(fix) = &f.fix {
            let _ = writeln!(text, "        fix: {fix}");
        }
    }
    let _ = writeln!(
        text,
        "\n{problems} problem(s), {warnings} warning(s){}",
        if problems == 0 {
            ": ready to start"
        } else {
            ": fix the problems above before `resonance start`"
        }
    );
    (text, problems)
}

async fn port_free(host: &str, port: u16, key: &str) -> Finding {
    if port == 0 {
        return Finding::ok(format!("{key}: 0 (any free port)"));
    }
    match tokio::net::TcpListener::bind((host, port)).await {
        Ok(_) => Finding::ok(format!("{key}: {host}:{port} is free")),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => Finding::problem(
            format!("{key}: {host}:{port} is already in use"),
            "stop what listens there (another Resonance? `ss -ltnp`), or choose another port",
        ),
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => Finding::problem(
            format!("{key}: not allowed to listen on {host}:{port} ({e})"),
            "ports below 1024 need root or CAP_NET_BIND_SERVICE (AmbientCapabilities= in the systemd unit), or use a higher port behind nginx",
        ),
        Err(e) => Finding::problem(
            format!("{key}: cannot listen on {host}:{port}: {e}"),
            "check server.host: it must be an address of this machine (0.0.0.0 for all)",
        ),
    }
}

fn file_descriptors(config: &Config, env: &Environment) -> Finding {
    let Some((soft, hard)) = env.fd_limit else {
        return Finding::warn(
            "open-file limit: unknown",
            "make sure the limit covers every connection (one file descriptor each)",
        );
    };
    // The server raises its soft limit to the hard one at start.
    let usable = hard.max(soft);
    let quotas: Vec<u64> = config.apps.iter().map(|a| a.max_connections).collect();
    let unlimited = quotas.contains(&0);
    let wanted: u64 = quotas.iter().sum::<u64>().saturating_add(FD_RESERVE);
    if !unlimited && usable < wanted {
        return Finding::problem(
            format!(
                "open-file limit {usable} is below the apps' max_connections ({}) plus {FD_RESERVE} for the server",
                wanted - FD_RESERVE
            ),
            format!(
                "raise it to at least {wanted}: LimitNOFILE= in the systemd unit, minfds= for supervisor, `ulimit -n` in a shell, or --ulimit nofile= for docker"
            ),
        );
    }
    if usable < 10_000 {
        return Finding::warn(
            format!(
                "open-file limit {usable}: at most about {} connections{}",
                usable.saturating_sub(FD_RESERVE),
                if unlimited {
                    " (max_connections is unlimited)"
                } else {
                    ""
                }
            ),
            "for production raise it (LimitNOFILE=100000 in deploy/resonance.service)",
        );
    }
    Finding::ok(format!(
        "open-file limit {usable} (soft {soft}, raised to hard {hard} at start){}",
        if unlimited {
            String::new()
        } else {
            format!(" covers max_connections {}", wanted - FD_RESERVE)
        }
    ))
}

/// Development credentials or open endpoints on a non-loopback address.
fn exposure(config: &Config) -> Vec<Finding> {
    let s = &config.server;
    let public = !matches!(s.host.as_str(), "127.0.0.1" | "::1" | "localhost");
    let mut out = Vec::new();
    let dev = crate::core::app::AppConfig::default();
    for (i, app) in config.apps.iter().enumerate() {
        if app.secret == dev.secret || app.key == dev.key {
            let finding = if public {
                Finding::problem(
                    format!(
                        "apps[{i}]: the built-in development key/secret on a public address ({})",
                        s.host
                    ),
                    "run `resonance init` for fresh credentials",
                )
            } else {
                Finding::warn(
                    format!("apps[{i}]: the built-in development key/secret"),
                    "fine for development; run `resonance init` for real credentials",
                )
            };
            out.push(finding);
        }
    }
    if public && s.metrics_token.is_none() && s.metrics_listen.is_none() {
        out.push(Finding::warn(
            format!(
                "/metrics is open on {}:{} (it names every app id)",
                s.host, s.port
            ),
            "set metrics_token or metrics_listen",
        ));
    }
    if s.dashboard {
        out.push(Finding::ok(format!(
            "dashboard on at /dashboard ({})",
            if s.dashboard_token.is_some() {
                "apps' key+secret, or dashboard_token"
            } else {
                "apps' key+secret only; set dashboard_token for operators"
            }
        )));
        if public && s.tls_cert.is_none() {
            out.push(Finding::warn(
                "dashboard without built-in TLS on a public address",
                "serve it only behind a TLS proxy (deploy/nginx.conf), never over plain http",
            ));
        }
    }
    out
}

async fn nats_reachable(url: &str) -> Finding {
    let shown = redact(url);
    let probe = async {
        let client = async_nats::connect(url).await?;
        client.flush().await?;
        Ok::<_, crate::adapter::broker::BrokerError>(client.server_info().jetstream)
    };
    match tokio::time::timeout(PROBE_TIMEOUT, probe).await {
        Ok(Ok(true)) => Finding::ok(format!(
            "cluster.nats_url: NATS at {shown} answers, JetStream on"
        )),
        Ok(Ok(false)) => Finding::problem(
            format!("cluster.nats_url: NATS at {shown} answers but has no JetStream"),
            "start nats-server with -js (the cluster keeps presence in JetStream key-value buckets)",
        ),
        Ok(Err(e)) => Finding::problem(
            format!("cluster.nats_url: NATS at {shown}: {e}"),
            "start nats-server (with -js) or correct the URL (nats://host:4222)",
        ),
        Err(_) => Finding::problem(
            format!("cluster.nats_url: NATS at {shown} did not answer within {PROBE_TIMEOUT:?}"),
            "check the host, port and firewall",
        ),
    }
}

async fn redis_reachable(url: &str, key: &str) -> Finding {
    let shown = redact(url);
    let probe = async {
        let client = crate::adapter::broker::redis::client_for(url)
            .await
            .map_err(|e| redis::RedisError::from((redis::ErrorKind::Io, "", e.to_string())))?;
        let mut conn = client.get_multiplexed_async_connection().await?;
        redis::cmd("PING").query_async::<String>(&mut conn).await
    };
    match tokio::time::timeout(PROBE_TIMEOUT, probe).await {
        Ok(Ok(_)) => Finding::ok(format!("{key}: Redis at {shown} answers PING")),
        Ok(Err(e)) => Finding::problem(
            format!("{key}: Redis at {shown}: {e}"),
            "start Redis or correct the URL (redis://[:password@]host:port/db)",
        ),
        Err(_) => Finding::problem(
            format!("{key}: Redis at {shown} did not answer within {PROBE_TIMEOUT:?}"),
            "check the host, port and firewall",
        ),
    }
}

async fn auth_endpoint(endpoint: &str, key: &str) -> Finding {
    let verdict = crate::auth_endpoint::authorize(crate::auth_endpoint::AuthCall {
        endpoint,
        channel: "private-resonance-doctor",
        socket_id: "1.1",
        headers: &[],
        handshake_cookie: None,
        timeout: PROBE_TIMEOUT,
    })
    .await;
    use crate::auth_endpoint::Verdict;
    match verdict {
        Verdict::Refused {
            status: 502 | 504,
            reason,
        } => Finding::problem(
            format!("{key}: {endpoint}: {reason}"),
            "start the app or correct the URL (Laravel: http://app.host/broadcasting/auth)",
        ),
        Verdict::Refused { status, .. } => Finding::ok(format!(
            "{key}: {endpoint} answers (HTTP {status} for a guest, as expected)"
        )),
        Verdict::Allowed { .. } => Finding::warn(
            format!("{key}: {endpoint} authorised a guest with no cookie for a private channel"),
            "the endpoint should refuse requests without a session (Laravel's Broadcast::channel callbacks)",
        ),
    }
}

/// The apps database answers on its TCP port (the schema is checked by
/// the server itself).
async fn database_reachable(url: &str) -> Finding {
    let shown = redact(url);
    let Some((host, port)) = host_port(url) else {
        return Finding::problem(
            format!("RESONANCE_APPS_DATABASE: cannot read a host from {shown}"),
            "use postgres://user:pass@host:5432/db or mysql://user:pass@host:3306/db",
        );
    };
    match tokio::time::timeout(
        PROBE_TIMEOUT,
        tokio::net::TcpStream::connect((host.as_str(), port)),
    )
    .await
    {
        Ok(Ok(_)) => Finding::ok(format!(
            "apps database at {host}:{port} accepts connections"
        )),
        Ok(Err(e)) => Finding::problem(
            format!("apps database at {host}:{port}: {e}"),
            "start the database or correct RESONANCE_APPS_DATABASE",
        ),
        Err(_) => Finding::problem(
            format!("apps database at {host}:{port} did not answer within {PROBE_TIMEOUT:?}"),
            "check the host, port and firewall",
        ),
    }
}

/// Host and port of a `scheme://[user[:pass]@]host[:port][/...]` URL.
fn host_port(url: &str) -> Option<(String, u16)> {
    let (scheme, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?']).next()?;
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let default = match scheme {
        "postgres" | "postgresql" => 5432,
        "mysql" | "mariadb" => 3306,
        "redis" | "rediss" => 6379,
        _ => return None,
    };
    let (host, port) = match host_port.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || host_port.starts_with('[') => match p.parse() {
            Ok(p) => (h, p),
            Err(_) => (host_port, default),
        },
        _ => (host_port, default),
    };
    let host = host.trim_matches(['[', ']']);
    (!host.is_empty()).then(|| (host.to_string(), port))
}

/// A URL without its password, for messages.
fn redact(url: &str) -> String {
    match (url.split_once("://"), url.rfind('@')) {
        (Some((scheme, rest)), Some(_)) => {
            let (userinfo, host) = rest.rsplit_once('@').unwrap_or(("", rest));
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{scheme}://{user}:***@{host}")
        }
        _ => url.to_string(),
    }
}

fn certificate(cert_path: &str, key_path: &str, chain: Option<&str>, now: i64) -> Vec<Finding> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let mut out = Vec::new();
    if let Err(e) = crate::tls::acceptor(cert_path, key_path, chain) {
        out.push(Finding::problem(
            e,
            "point tls_cert at the PEM certificate (chain) and tls_key at its private key",
        ));
        return out;
    }
    out.push(Finding::ok(format!(
        "server.tls_cert: {cert_path} matches its key"
    )));
    let leaf = CertificateDer::pem_file_iter(cert_path)
        .ok()
        .and_then(|mut certs| certs.next())
        .and_then(Result::ok);
    let Some(validity) = leaf.as_ref().and_then(|der| cert::validity(der)) else {
        out.push(Finding::warn(
            format!("server.tls_cert: cannot read the validity dates of {cert_path}"),
            "check it with `openssl x509 -noout -dates -in <file>`",
        ));
        return out;
    };
    let days_left = (validity.not_after - now).div_euclid(86_400);
    let until = cert::format_utc(validity.not_after);
    if validity.not_after <= now {
        out.push(Finding::problem(
            format!("server.tls_cert: expired on {until}"),
            "renew it (certbot renew) and restart, or reload once reload is available",
        ));
    } else if validity.not_before > now {
        out.push(Finding::problem(
            format!(
                "server.tls_cert: not valid before {}",
                cert::format_utc(validity.not_before)
            ),
            "check the machine's clock, or wait for the certificate's start date",
        ));
    } else if days_left < RENEW_WITHIN_DAYS {
        out.push(Finding::problem(
            format!("server.tls_cert: expires in {days_left} day(s), on {until}"),
            format!("renew it now (certbot renew); anything under {RENEW_WITHIN_DAYS} days counts as a problem"),
        ));
    } else {
        out.push(Finding::ok(format!(
            "server.tls_cert: valid until {until} ({days_left} days)"
        )));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_read_and_redacted() {
        assert_eq!(
            host_port("postgres://u:p@db.example:6543/apps"),
            Some(("db.example".into(), 6543))
        );
        assert_eq!(host_port("mysql://db/apps"), Some(("db".into(), 3306)));
        assert_eq!(
            host_port("postgres://[::1]:5432/x"),
            Some(("::1".into(), 5432))
        );
        assert_eq!(host_port("http://x"), None);
        assert_eq!(redact("redis://:hunter2@h:6379/0"), "redis://:***@h:6379/0");
        assert_eq!(redact("redis://h:6379"), "redis://h:6379");
    }

    #[test]
    fn fd_limit_against_quotas() {
        let mut config = Config::default();
        config.apps[0].max_connections = 50_000;
        let env = |hard| Environment {
            fd_limit: Some((1024, hard)),
            now: 0,
            apps_database: None,
        };
        assert_eq!(file_descriptors(&config, &env(4096)).level, Level::Problem);
        assert_eq!(file_descriptors(&config, &env(100_000)).level, Level::Ok);
        config.apps[0].max_connections = 0;
        assert_eq!(file_descriptors(&config, &env(4096)).level, Level::Warn);
    }

    #[test]
    fn development_credentials_on_a_public_address_are_a_problem() {
        let mut config = Config::default();
        assert_eq!(exposure(&config)[0].level, Level::Warn);
        config.server.host = "0.0.0.0".into();
        assert_eq!(exposure(&config)[0].level, Level::Problem);
    }
}
