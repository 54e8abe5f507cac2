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
    },
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
        } => start(config, echo_config, Overrides { host, port }),
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

fn start(file: Option<PathBuf>, echo_file: Option<PathBuf>, overrides: Overrides) -> ExitCode {
    let env = |name: &str| std::env::var(name).ok();
    let loaded = match &echo_file {
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
        None => Config::load(file.as_deref(), &env, &overrides).map(|c| (c, Vec::new())),
    };
    let (config, warnings) = match loaded {
        Ok(c) => c,
        Err(e) => {
            eprintln!("resonance: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&config.server.log)
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
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
        let default_app = config.apps[0] == resonance::core::app::AppConfig::default();
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
        tracing::info!("listening on {addr}");
        server.run(shutdown_signal()).await;
        tracing::info!("stopped");
        ExitCode::SUCCESS
    })
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
