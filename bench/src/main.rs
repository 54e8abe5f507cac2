//! resonance-bench: a load generator for Pusher-protocol servers (Resonance, Soketi, ...).
//!
//! Every run prints one JSON line with all figures on stdout (and appends it to `--json`),
//! a readable summary and a once-per-second progress line on stderr.

mod fanout;
mod http;
mod idle;
mod presence;
mod pusher;
mod report;
mod sio;
mod stats;
mod tls;

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use serde_json::{Value, json};

use crate::http::Api;
use crate::pusher::Target;
use crate::stats::Proc;

#[derive(Parser, Debug)]
#[command(
    name = "resonance-bench",
    version,
    about = "Load generator for Pusher-protocol servers (WebSocket + signed HTTP API)"
)]
struct Cli {
    #[command(flatten)]
    common: Common,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Args, Debug, Clone)]
pub struct Common {
    /// WebSocket base URL of the server; several comma-separated URLs (the
    /// nodes of a cluster) take the connections round-robin, and the API goes
    /// to the first.
    #[arg(long, global = true, default_value = "ws://127.0.0.1:6001")]
    pub url: String,
    /// HTTP API base URL (default: derived from --url).
    #[arg(long, global = true)]
    pub http: Option<String>,
    #[arg(long, global = true, default_value = "12345")]
    pub app_id: String,
    #[arg(long, global = true, default_value = "app-key")]
    pub key: String,
    #[arg(long, global = true, default_value = "app-secret")]
    pub secret: String,
    /// Server pid: sample its RSS (/proc/PID/status) and CPU time (/proc/PID/stat).
    #[arg(long, global = true)]
    pub pid: Option<u32>,
    /// Also append the JSON result line to this file.
    #[arg(long, global = true)]
    pub json: Option<PathBuf>,
    /// Server name recorded in the JSON (e.g. resonance, soketi).
    #[arg(long, global = true)]
    pub label: Option<String>,
    /// Free-form run name recorded in the JSON (run.sh uses it to build its table).
    #[arg(long, global = true)]
    pub tag: Option<String>,
    /// Runtime worker threads (1 = current-thread runtime).
    #[arg(long, global = true, default_value_t = 1)]
    pub threads: usize,
    /// Bind outgoing connections to 127.0.0.1..127.0.0.N (loopback targets only; 0 = no bind).
    #[arg(long, global = true, default_value_t = 8)]
    pub source_ips: u8,
    /// Connection attempts in flight at once.
    #[arg(long, global = true, default_value_t = 200)]
    pub concurrency: usize,
    /// Seconds allowed for connect + subscribe of one connection.
    #[arg(long, global = true, default_value_t = 10.0)]
    pub timeout: f64,
    /// Exit with status 1 when the run saw any failure or loss.
    #[arg(long, global = true)]
    pub strict: bool,
    /// No progress lines.
    #[arg(long, global = true)]
    pub quiet: bool,
    /// The subscribers' wire: pusher, eio4 (socket.io-client 4.x) or eio3 (2.x).
    #[arg(long, global = true, value_enum, default_value = "pusher")]
    pub proto: sio::Proto,
    /// How fanout publishes: api (signed Pusher API), echo-api (laravel-echo-server API,
    /// needs --echo-key) or redis (Laravel's broadcaster, needs --redis).
    #[arg(long, global = true, value_enum, default_value = "api")]
    pub publish: sio::Publish,
    /// laravel-echo-server API key (its `clients` key; Resonance's extra_api_keys). With
    /// Socket.IO subscribers it is also used to wait for the server's subscription counts.
    #[arg(long, global = true)]
    pub echo_key: Option<String>,
    /// Redis for --publish redis, e.g. redis://127.0.0.1:6379.
    #[arg(long, global = true)]
    pub redis: Option<String>,
    /// Laravel's Redis key prefix, put before the channel name on PUBLISH.
    #[arg(long, global = true, default_value = "")]
    pub redis_prefix: String,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Open many connections, subscribe them, measure server memory, hold.
    Idle(IdleArgs),
    /// Subscribers over channels; publish through the HTTP API; measure delivery latency.
    Fanout(FanoutArgs),
    /// Fanout while connections disconnect and reconnect.
    Churn(ChurnArgs),
    /// Presence members join, leave and rejoin; check member events.
    Presence(PresenceArgs),
    /// Print a markdown table from JSON result lines (files written with --json).
    Report {
        /// JSONL files.
        files: Vec<PathBuf>,
    },
}

#[derive(Args, Debug, Clone)]
pub struct IdleArgs {
    #[arg(long, default_value_t = 1000)]
    pub connections: usize,
    #[arg(long, default_value_t = 100)]
    pub channels: usize,
    /// Seconds to hold the connections open after they are all subscribed.
    #[arg(long, default_value_t = 5.0)]
    pub hold: f64,
}

#[derive(Args, Debug, Clone)]
pub struct FanoutArgs {
    #[arg(long, default_value_t = 2000)]
    pub subscribers: usize,
    #[arg(long, default_value_t = 10)]
    pub channels: usize,
    /// Events per second published on the API (each to one channel, round robin);
    /// deliveries/s = rate * subscribers / channels.
    #[arg(long, default_value_t = 100.0)]
    pub rate: f64,
    /// Seconds of publishing.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Size of the event data in bytes.
    #[arg(long, default_value_t = 100)]
    pub payload: usize,
    /// Keep-alive API connections to start with; they share one schedule, so a slow answer
    /// on one does not hold the others back.
    #[arg(long, default_value_t = 4)]
    pub publishers: usize,
    /// More API connections are opened while the schedule slips, up to this many.
    #[arg(long, default_value_t = 64)]
    pub max_publishers: usize,
    /// Seconds to wait for late deliveries after the last publish.
    #[arg(long, default_value_t = 2.0)]
    pub grace: f64,
}

#[derive(Args, Debug, Clone)]
pub struct ChurnArgs {
    #[command(flatten)]
    pub fanout: FanoutArgs,
    /// Connections per second that disconnect, reconnect and resubscribe.
    #[arg(long, default_value_t = 50.0)]
    pub churn_rate: f64,
    /// How many of the subscribers take part in the churn (default: min(subscribers/4,
    /// max(50, 2 * churn-rate))). Loss is measured on the others.
    #[arg(long)]
    pub churn_pool: Option<usize>,
}

#[derive(Args, Debug, Clone)]
pub struct PresenceArgs {
    /// Members (one connection and one user id each).
    #[arg(long, default_value_t = 100)]
    pub members: usize,
    /// Presence channels the members are spread over.
    #[arg(long, default_value_t = 1)]
    pub channels: usize,
    /// Joins per second in the join phase.
    #[arg(long, default_value_t = 50.0)]
    pub join_rate: f64,
    /// Seconds of the leave/rejoin phase.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Leave/rejoin cycles per second (one at a time per channel).
    #[arg(long, default_value_t = 20.0)]
    pub cycle_rate: f64,
    /// Milliseconds between a member's unsubscribe and its resubscribe.
    #[arg(long, default_value_t = 20)]
    pub rejoin_delay_ms: u64,
    /// Seconds to wait for late member events at the end of each phase.
    #[arg(long, default_value_t = 2.0)]
    pub grace: f64,
}

/// What every mode needs.
pub struct Ctx {
    pub common: Common,
    pub target: Arc<Target>,
    pub api: Arc<Api>,
    pub server: Option<Proc>,
    /// Prefix of the channel names of this run (distinct per process).
    pub nonce: String,
}

/// The outcome of one mode: its JSON figures, a readable summary, and whether it was clean.
pub struct Outcome {
    pub json: Value,
    pub summary: String,
    pub ok: bool,
}

fn raise_nofile() -> Option<u64> {
    // SAFETY: plain getrlimit/setrlimit on a stack struct.
    unsafe {
        let mut r = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) != 0 {
            return None;
        }
        r.rlim_cur = r.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &r);
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) != 0 {
            return None;
        }
        Some(r.rlim_cur)
    }
}

fn main() {
    let cli = Cli::parse();
    if let Cmd::Report { files } = &cli.cmd {
        std::process::exit(report::run(files));
    }
    let nofile = raise_nofile();
    let rt = if cli.common.threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(cli.common.threads)
            .enable_all()
            .build()
    };
    let rt = match rt {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            std::process::exit(2);
        }
    };
    let code = rt.block_on(async_main(cli, nofile));
    // Dropping the runtime closes every connection.
    rt.shutdown_timeout(Duration::from_millis(500));
    std::process::exit(code);
}

async fn async_main(cli: Cli, nofile: Option<u64>) -> i32 {
    let c = cli.common;
    sio::set_proto(c.proto);
    // The API goes to the first URL; subscribers spread over all of them.
    let first_url = c
        .url
        .split(',')
        .next()
        .unwrap_or_default()
        .trim()
        .to_string();
    let http_base = c.http.clone().unwrap_or_else(|| {
        if let Some(rest) = first_url.strip_prefix("wss://") {
            format!("https://{rest}")
        } else if let Some(rest) = first_url.strip_prefix("ws://") {
            format!("http://{rest}")
        } else {
            first_url.clone()
        }
    });
    let timeout = Duration::from_secs_f64(c.timeout.max(0.1));
    let target = match Target::new(&c.url, &c.key, &c.secret, c.source_ips, timeout).await {
        Ok(t) => Arc::new(t),
        Err(e) => {
            eprintln!("{e}");
            return 2;
        }
    };
    let api = match Api::new(&http_base, &c.app_id, &c.key, &c.secret).await {
        Ok(a) => Arc::new(a),
        Err(e) => {
            eprintln!("{e}");
            return 2;
        }
    };
    let server = c.pid.map(Proc::pid);
    if let Some(p) = &server
        && p.rss_kib().is_none()
    {
        eprintln!(
            "warning: cannot read /proc/{}/status; no server figures",
            c.pid.unwrap_or(0)
        );
    }
    let nonce = format!("bench{}", std::process::id());
    let ctx = Ctx {
        common: c.clone(),
        target,
        api,
        server,
        nonce,
    };
    let (mode, out) = match cli.cmd {
        Cmd::Idle(a) => ("idle", idle::run(&ctx, &a).await),
        Cmd::Fanout(a) => ("fanout", fanout::run(&ctx, &a, None).await),
        Cmd::Churn(a) => ("churn", fanout::run(&ctx, &a.fanout, Some(&a)).await),
        Cmd::Presence(a) => ("presence", presence::run(&ctx, &a).await),
        Cmd::Report { .. } => unreachable!("handled before the runtime starts"),
    };
    emit(&ctx, mode, out, nofile)
}

fn emit(ctx: &Ctx, mode: &str, out: Outcome, nofile: Option<u64>) -> i32 {
    let c = &ctx.common;
    let me = Proc::me();
    let mut v = json!({
        "mode": mode,
        "label": c.label,
        "tag": c.tag,
        "url": c.url,
        "proto": format!("{:?}", c.proto).to_lowercase(),
        "publish": format!("{:?}", c.publish).to_lowercase(),
        "unix_time": stats::now_micros() / 1_000_000,
        "ok": out.ok,
        "tool": {
            "threads": c.threads,
            "cpu_s": me.cpu_secs().map(|x| stats::round(x, 2)),
            "rss_kib": me.rss_kib(),
            "nofile": nofile,
        },
    });
    if let (Value::Object(m), Value::Object(extra)) = (&mut v, out.json) {
        m.extend(extra);
    }
    let line = v.to_string();
    println!("{line}");
    if let Some(path) = &c.json {
        let r = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .and_then(|mut f| writeln!(f, "{line}"));
        if let Err(e) = r {
            eprintln!("cannot append to {}: {e}", path.display());
        }
    }
    let name = c.label.as_deref().unwrap_or(&c.url);
    eprintln!(
        "== {mode} against {name}{}: {}\n{}",
        c.tag
            .as_deref()
            .map(|t| format!(" ({t})"))
            .unwrap_or_default(),
        if out.ok { "OK" } else { "PROBLEMS" },
        out.summary
    );
    if c.strict && !out.ok { 1 } else { 0 }
}
