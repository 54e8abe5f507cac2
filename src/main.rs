//! The `resonance` command: `start` runs the server, `init` writes a config,
//! `doctor` checks a config and the machine.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use resonance::config::{Config, Overrides};
use resonance::init;
use resonance::server::Server;

#[derive(Parser)]
#[command(
    name = "resonance",
    version,
    about = "A real-time WebSocket server for Laravel Echo, pusher-js and Pusher SDKs"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server in the foreground until SIGTERM/SIGINT.
    Start {
        /// TOML config file (see `resonance init`).
        #[arg(long, env = "RESONANCE_CONFIG")]
        config: Option<PathBuf>,
        /// Address to listen on (overrides config and RESONANCE_HOST).
        #[arg(long)]
        host: Option<String>,
        /// Port to listen on (overrides config and RESONANCE_PORT).
        #[arg(long)]
        port: Option<u16>,
        /// Run from a laravel-echo-server.json instead of a Resonance config.
        #[arg(long, conflicts_with = "config")]
        echo_config: Option<PathBuf>,
        /// Write the process id here (for `resonance reload`); removed at exit.
        #[arg(long, env = "RESONANCE_PID_FILE")]
        pid_file: Option<PathBuf>,
    },
    /// Make the running server re-read its config file (apps, TLS
    /// certificate, log filter): checks the file first, then sends SIGHUP.
    Reload {
        /// The running server's pid file (`resonance start --pid-file`).
        #[arg(long, env = "RESONANCE_PID_FILE", required_unless_present = "pid")]
        pid_file: Option<PathBuf>,
        /// The running server's process id, instead of a pid file.
        #[arg(long)]
        pid: Option<i32>,
        /// Check this config file before signalling; a broken file is
        /// reported here and the server is left alone.
        #[arg(long, env = "RESONANCE_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Manage apps in the config file or the apps database: list, add,
    /// remove, rotate-secret, migrate.
    Apps(resonance::apps::cli::AppsArgs),
    /// Check a config and this machine before starting: ports, open-file
    /// limit, Redis, apps database, auth endpoints, TLS certificate. Exits 1
    /// when something needs fixing.
    Doctor {
        /// TOML config file (see `resonance init`).
        #[arg(long, env = "RESONANCE_CONFIG")]
        config: Option<PathBuf>,
        /// Check a laravel-echo-server.json instead of a Resonance config.
        #[arg(long, conflicts_with = "config")]
        echo_config: Option<PathBuf>,
        #[arg(long)]
        host: Option<String>,
        #[arg(long)]
        port: Option<u16>,
    },
    /// Write a commented config with fresh app credentials and print the
    /// Laravel .env lines and Echo snippet.
    Init {
        /// Where to write the config.
        #[arg(long, default_value = "resonance.toml")]
        path: PathBuf,
        /// Overwrite an existing file.
        #[arg(long)]
        force: bool,
        #[arg(long, default_value = "127.0.0.1")]
        host: String,
        #[arg(long, default_value_t = 6001)]
        port: u16,
    },
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Start {
            config,
            host,
            port,
            echo_config,
            pid_file,
        } => start(config, echo_config, Overrides { host, port }, pid_file),
        Command::Reload {
            pid_file,
            pid,
            config,
        } => reload(pid_file, pid, config),
        Command::Apps(args) => resonance::apps::cli::run(args),
        Command::Doctor {
            config,
            echo_config,
            host,
            port,
        } => doctor(config, echo_config, Overrides { host, port }),
        Command::Init {
            path,
            force,
            host,
            port,
        } => {
            if path.exists() && !force {
                eprintln!("{} exists; pass --force to overwrite it", path.display());
                return ExitCode::FAILURE;
            }
            let (id, key, secret) = init::generate_credentials();
            if let Err(e) =
                std::fs::write(&path, init::config_file(&id, &key, &secret, &host, port))
            {
                eprintln!("cannot write {}: {e}", path.display());
                return ExitCode::FAILURE;
            }
            eprintln!(
                "wrote {} — start with: resonance start --config {}\n",
                path.display(),
                path.display()
            );
            // A closed stdout (`resonance init | head`) is not worth a panic.
            let text = init::laravel_instructions(&id, &key, &secret, &host, port);
            let _ = writeln!(std::io::stdout(), "{text}");
            ExitCode::SUCCESS
        }
    }
}

/// Loads the config the way `start` does (also for reloads).
fn load_config(
    file: Option<&std::path::Path>,
    echo_file: Option<&std::path::Path>,
    overrides: &Overrides,
) -> Result<(Config, Vec<String>), String> {
    let env = |name: &str| std::env::var(name).ok();
    match echo_file {
        Some(path) => std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))
            .and_then(|text| resonance::echo_config::load(&text, &env))
            .map(|(mut config, warnings)| {
                if let Some(host) = &overrides.host {
                    config.server.host = host.clone();
                }
                if let Some(port) = overrides.port {
                    config.server.port = port;
                }
                (config, warnings)
            }),
        None => Config::load(file, &env, overrides).map(|c| (c, Vec::new())),
    }
}

fn start(
    file: Option<PathBuf>,
    echo_file: Option<PathBuf>,
    overrides: Overrides,
    pid_file: Option<PathBuf>,
) -> ExitCode {
    let loaded = load_config(file.as_deref(), echo_file.as_deref(), &overrides);
    let (config, warnings) = match loaded {
        Ok(c) => c,
        Err(e) => {
            eprintln!("resonance: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    let log_reloader = init_logging(&config.server.log);
    raise_fd_limit();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("resonance: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let default_app = config.apps.first() == Some(&resonance::core::app::AppConfig::default());
        let apps = config.apps.clone();
        let server = match Server::bind(config).await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("resonance: cannot listen: {e}");
                return ExitCode::FAILURE;
            }
        };
        let addr = server.local_addr().map(|a| a.to_string()).unwrap_or_default();
        for app in &apps {
            tracing::info!(app_id = %app.id, key = %app.key, "app ready: ws://{addr}/app/{} , API http://{addr}/apps/{}", app.key, app.id);
        }
        if default_app {
            tracing::warn!(
                secret = %apps[0].secret,
                "using the built-in development app; run `resonance init` for real credentials"
            );
        }
        for warning in &warnings {
            tracing::warn!("laravel-echo-server setting not honoured: {warning}");
        }
        for app in apps.iter().filter(|a| !a.id.bytes().all(|b| b.is_ascii_digit())) {
            tracing::warn!(app_id = %app.id, "app id is not numeric: Pusher SDKs (PHP, Python) will refuse it; the laravel-echo-server API accepts it");
        }
        // The server forwards the browser's cookie to the auth endpoint: a
        // page on any other site could then be authorised as the visitor
        // (unless the session cookie is SameSite=Lax/Strict, Laravel's
        // default). Say so once; pinning allowed_origins closes it.
        for app in apps.iter().filter(|a| {
            a.auth_endpoint.is_some() && a.allowed_origins.iter().any(|o| o == "*")
        }) {
            tracing::warn!(app_id = %app.id, "auth_endpoint is set and allowed_origins is [\"*\"]: pages on any site may open sockets that the auth endpoint authorises with the visitor's cookies; set allowed_origins to your site's origins (RESONANCE_APP_ALLOWED_ORIGINS)");
        }
        server.control().set_log_reloader(log_reloader);
        spawn_reload_on_sighup(server.control().clone(), file, echo_file, overrides);
        if let Some(path) = &pid_file
            && let Err(e) = std::fs::write(path, format!("{}\n", std::process::id()))
        {
            eprintln!("resonance: cannot write the pid file {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
        tracing::info!("listening on {addr}");
        server.run(shutdown_signal()).await;
        if let Some(path) = &pid_file {
            let _ = std::fs::remove_file(path);
        }
        tracing::info!("stopped");
        ExitCode::SUCCESS
    })
}

/// The tracing subscriber, with a filter that a reload can replace.
fn init_logging(filter: &str) -> resonance::apps::LogReloader {
    use tracing_subscriber::prelude::*;
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let (filter, handle) = tracing_subscriber::reload::Layer::new(filter);
    tracing_subscriber::registry()
        .with(filter)
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
        .init();
    Box::new(move |text: &str| {
        let filter = tracing_subscriber::EnvFilter::try_new(text)
            .map_err(|e| format!("server.log: {text:?} is not a log filter: {e}"))?;
        handle
            .reload(filter)
            .map_err(|e| format!("server.log: cannot change the log filter: {e}"))
    })
}

/// On each SIGHUP: re-reads the config the server started from and hands
/// it to the control; a broken config is refused and logged with its key.
fn spawn_reload_on_sighup(
    control: std::sync::Arc<resonance::apps::Control>,
    file: Option<PathBuf>,
    echo_file: Option<PathBuf>,
    overrides: Overrides,
) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        tracing::warn!("cannot listen for SIGHUP; reloads are off");
        return;
    };
    let node = control.node().clone();
    node.spawn(async move {
        while hup.recv().await.is_some() {
            tracing::info!("SIGHUP: reloading the configuration");
            let loaded = load_config(file.as_deref(), echo_file.as_deref(), &overrides);
            let result = match loaded {
                Ok((config, _)) => control.reload(config).await,
                Err(e) => Err(e),
            };
            match result {
                Ok(report) => tracing::info!("reloaded: {report}"),
                Err(e) => tracing::error!("reload refused, the running configuration stays: {e}"),
            }
        }
    });
}

/// `resonance reload`: checks the config file, then signals the server.
fn reload(pid_file: Option<PathBuf>, pid: Option<i32>, config: Option<PathBuf>) -> ExitCode {
    if let Some(path) = &config {
        let env = |name: &str| std::env::var(name).ok();
        if let Err(e) = Config::load(Some(path), &env, &Overrides::default()) {
            eprintln!("resonance: configuration error, not reloading: {e}");
            return ExitCode::from(2);
        }
    }
    let pid = match (pid, &pid_file) {
        (Some(pid), _) => pid,
        (None, Some(path)) => match std::fs::read_to_string(path)
            .map_err(|e| e.to_string())
            .and_then(|t| t.trim().parse::<i32>().map_err(|e| e.to_string()))
        {
            Ok(pid) => pid,
            Err(e) => {
                eprintln!(
                    "resonance: cannot read a process id from {}: {e}",
                    path.display()
                );
                return ExitCode::FAILURE;
            }
        },
        (None, None) => {
            eprintln!("resonance: give --pid-file or --pid");
            return ExitCode::FAILURE;
        }
    };
    if pid <= 1 {
        eprintln!("resonance: {pid} is not a server's process id");
        return ExitCode::FAILURE;
    }
    // SAFETY: kill(2) with a positive pid and SIGHUP only sends a signal.
    if unsafe { libc::kill(pid, libc::SIGHUP) } != 0 {
        eprintln!(
            "resonance: cannot signal process {pid}: {}",
            std::io::Error::last_os_error()
        );
        return ExitCode::FAILURE;
    }
    eprintln!("sent SIGHUP to {pid}; the server logs what it reloaded (or why it refused)");
    ExitCode::SUCCESS
}

/// `resonance doctor`: loads the config as `start` would, runs the checks,
/// prints what to fix.
fn doctor(file: Option<PathBuf>, echo_file: Option<PathBuf>, overrides: Overrides) -> ExitCode {
    let env = |name: &str| std::env::var(name).ok();
    let loaded = match &echo_file {
        Some(path) => std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))
            .and_then(|text| resonance::echo_config::load(&text, &env))
            .map(|(mut config, _)| {
                config.server.host = overrides.host.clone().unwrap_or(config.server.host);
                config.server.port = overrides.port.unwrap_or(config.server.port);
                config
            }),
        None => Config::load(file.as_deref(), &env, &overrides),
    };
    let config = match loaded {
        Ok(c) => c,
        Err(e) => {
            println!(
                "PROBLEM configuration: {e}\n        fix: correct that key or variable (see README: Configuration)"
            );
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("resonance: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let findings = runtime.block_on(resonance::doctor::check(
        &config,
        &resonance::doctor::Environment::current(),
    ));
    let (text, problems) = resonance::doctor::report(&findings);
    let _ = write!(std::io::stdout(), "{text}");
    if problems == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Resolves on SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::warn!("cannot install signal handlers; stop with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

/// Lifts the soft open-file limit to the hard limit: every connection is a
/// file descriptor, and the default soft limit (1024) is far too low.
fn raise_fd_limit() {
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}
