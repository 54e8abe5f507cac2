//! Global counters, latency histograms and `/proc` sampling.
//!
//! Everything here is cheap to update from the hot path: counters are relaxed atomics and
//! histograms are per-thread shards (one uncontended mutex per worker thread) merged at the
//! end of a run.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;
use serde_json::{Value, json};

/// Named counters (index into [`COUNTERS`]).
#[derive(Clone, Copy, Debug)]
pub enum K {
    /// Connection attempts started (open + subscribe).
    Attempted,
    /// Successful subscriptions (subscription_succeeded received), re-subscriptions included.
    Subscribed,
    /// Connections currently open and subscribed.
    Alive,
    /// Connections closed by the server (or failed) after they had subscribed.
    Dropped,
    /// `pusher:error` frames received.
    PusherErrors,
    /// Deliveries received by measured (stable) subscribers.
    Received,
    /// Deliveries received by churning connections (not held to an expectation).
    ReceivedChurn,
    /// Events the publisher sent.
    Published,
    /// Events the API accepted (2xx).
    PublishedOk,
    /// Events the API refused or that failed on the wire.
    ApiErrors,
    /// Deliveries expected by measured subscribers.
    Expected,
    /// Churn operations (disconnect + reconnect + resubscribe) completed.
    ChurnOps,
    /// Churn operations that failed to reconnect or resubscribe.
    ChurnFailures,
    /// `pusher_internal:member_added` received.
    MemberAdded,
    /// `pusher_internal:member_removed` received.
    MemberRemoved,
    /// Presence leave/rejoin cycles completed.
    Cycles,
}
const NK: usize = 16;

pub static COUNTERS: [AtomicU64; NK] = [const { AtomicU64::new(0) }; NK];

#[inline]
pub fn inc(k: K) {
    COUNTERS[k as usize].fetch_add(1, Relaxed);
}
#[inline]
pub fn add(k: K, n: u64) {
    COUNTERS[k as usize].fetch_add(n, Relaxed);
}
#[inline]
pub fn dec(k: K) {
    COUNTERS[k as usize].fetch_sub(1, Relaxed);
}
#[inline]
pub fn get(k: K) -> u64 {
    COUNTERS[k as usize].load(Relaxed)
}

/// Why a connection attempt (open + subscribe) failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fail {
    /// TCP connect refused.
    Refused,
    /// Other TCP connect error (address not available, ...).
    Connect,
    /// The WebSocket upgrade failed.
    Handshake,
    /// No `subscription_succeeded` within the timeout.
    Timeout,
    /// The server closed the connection before the subscription succeeded.
    Closed,
    /// `pusher:subscription_error`.
    SubscribeError,
    /// Anything unexpected on the wire.
    Protocol,
}
const NF: usize = 7;
pub const FAIL_NAMES: [&str; NF] = [
    "refused",
    "connect",
    "handshake",
    "timeout",
    "closed",
    "subscribe_error",
    "protocol",
];
pub static FAILS: [AtomicU64; NF] = [const { AtomicU64::new(0) }; NF];

pub fn fail(f: Fail) {
    FAILS[f as usize].fetch_add(1, Relaxed);
}
pub fn fails_total() -> u64 {
    FAILS.iter().map(|a| a.load(Relaxed)).sum()
}
pub fn fails_json() -> Value {
    let mut m = serde_json::Map::new();
    for (i, n) in FAIL_NAMES.iter().enumerate() {
        m.insert((*n).to_string(), json!(FAILS[i].load(Relaxed)));
    }
    Value::Object(m)
}

/// Counts per numeric code (close codes, HTTP statuses).
pub struct Codes(Mutex<Vec<(u16, u64)>>);

impl Codes {
    pub const fn new() -> Self {
        Codes(Mutex::new(Vec::new()))
    }
    pub fn add(&self, code: u16) {
        let mut v = lock(&self.0);
        match v.iter_mut().find(|(c, _)| *c == code) {
            Some((_, n)) => *n += 1,
            None => v.push((code, 1)),
        }
    }
    pub fn json(&self) -> Value {
        let mut v = lock(&self.0).clone();
        v.sort_unstable();
        let mut m = serde_json::Map::new();
        for (c, n) in v {
            m.insert(c.to_string(), json!(n));
        }
        Value::Object(m)
    }
}

/// Close codes of subscribed connections that the server closed.
pub static CLOSE_CODES: Codes = Codes::new();
/// HTTP statuses of refused API requests (0: transport error).
pub static API_STATUS: Codes = Codes::new();

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Histograms (microseconds).
#[derive(Clone, Copy, Debug)]
pub enum H {
    /// Publish (timestamp taken just before the API request) → frame read by a subscriber.
    Delivery,
    /// TCP connect → subscription_succeeded.
    Connect,
    /// pusher:subscribe sent → subscription_succeeded (presence).
    Join,
    /// API request round trip.
    Api,
}
const NH: usize = 4;
/// Largest value tracked exactly: 120 s; larger values are clamped.
const HIGHEST_US: u64 = 120_000_000;

fn new_hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HIGHEST_US, 3).expect("constant histogram bounds are valid")
}

struct Shard {
    h: Vec<Histogram<u64>>,
}

static SHARDS: Mutex<Vec<Arc<Mutex<Shard>>>> = Mutex::new(Vec::new());

thread_local! {
    static LOCAL: Arc<Mutex<Shard>> = {
        let s = Arc::new(Mutex::new(Shard { h: (0..NH).map(|_| new_hist()).collect() }));
        lock(&SHARDS).push(s.clone());
        s
    };
}

#[inline]
pub fn record(h: H, us: u64) {
    LOCAL.with(|s| {
        let mut g = lock(s);
        g.h[h as usize].saturating_record(us.min(HIGHEST_US));
    });
}

/// All shards of one histogram merged.
pub fn merged(h: H) -> Histogram<u64> {
    let mut out = new_hist();
    for s in lock(&SHARDS).iter() {
        let g = lock(s);
        let _ = out.add(&g.h[h as usize]);
    }
    out
}

/// Forget everything recorded so far in one histogram.
pub fn reset(h: H) {
    for s in lock(&SHARDS).iter() {
        lock(s).h[h as usize].reset();
    }
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

/// Percentiles in milliseconds.
pub fn hist_json(h: &Histogram<u64>) -> Value {
    if h.is_empty() {
        return json!({"count": 0});
    }
    json!({
        "count": h.len(),
        "p50_ms": ms(h.value_at_quantile(0.50)),
        "p90_ms": ms(h.value_at_quantile(0.90)),
        "p99_ms": ms(h.value_at_quantile(0.99)),
        "p999_ms": ms(h.value_at_quantile(0.999)),
        "max_ms": ms(h.max()),
        "mean_ms": (h.mean() / 10.0).round() / 100.0,
    })
}

pub fn hist_line(name: &str, h: &Histogram<u64>) -> String {
    if h.is_empty() {
        return format!("{name}: no samples");
    }
    format!(
        "{name}: n={} p50={:.2}ms p90={:.2}ms p99={:.2}ms p99.9={:.2}ms max={:.2}ms",
        h.len(),
        h.value_at_quantile(0.50) as f64 / 1000.0,
        h.value_at_quantile(0.90) as f64 / 1000.0,
        h.value_at_quantile(0.99) as f64 / 1000.0,
        h.value_at_quantile(0.999) as f64 / 1000.0,
        h.max() as f64 / 1000.0,
    )
}

/// Microseconds since the UNIX epoch (the timestamp carried in published events).
#[inline]
pub fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// `/proc` sampling of a process (the server under test, or ourselves).
#[derive(Clone, Debug)]
pub struct Proc {
    /// `"self"` or a pid.
    who: String,
}

impl Proc {
    pub fn pid(pid: u32) -> Self {
        Proc {
            who: pid.to_string(),
        }
    }
    pub fn me() -> Self {
        Proc {
            who: "self".to_string(),
        }
    }

    /// Resident set size in KiB (VmRSS).
    pub fn rss_kib(&self) -> Option<u64> {
        let s = std::fs::read_to_string(format!("/proc/{}/status", self.who)).ok()?;
        let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
        line.split_whitespace().nth(1)?.parse().ok()
    }

    /// CPU time (user + system, all threads) in seconds.
    pub fn cpu_secs(&self) -> Option<f64> {
        let s = std::fs::read_to_string(format!("/proc/{}/stat", self.who)).ok()?;
        // The command name (field 2) is in parentheses and may contain spaces.
        let rest = &s[s.rfind(')')? + 1..];
        let mut it = rest.split_whitespace();
        // After ')': field 3 is state; utime is field 14, stime field 15.
        let utime: u64 = it.nth(11)?.parse().ok()?;
        let stime: u64 = it.next()?.parse().ok()?;
        Some((utime + stime) as f64 / clk_tck())
    }
}

pub fn clk_tck() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}

/// Server (optional) and tool resource usage over a measured window.
pub struct Usage {
    server: Option<Proc>,
    me: Proc,
    t0: Instant,
    server_cpu0: Option<f64>,
    me_cpu0: Option<f64>,
}

impl Usage {
    pub fn start(server: Option<Proc>) -> Self {
        let me = Proc::me();
        Usage {
            server_cpu0: server.as_ref().and_then(|p| p.cpu_secs()),
            me_cpu0: me.cpu_secs(),
            server,
            me,
            t0: Instant::now(),
        }
    }
    pub fn server_cpu(&self) -> Option<f64> {
        Some(self.server.as_ref()?.cpu_secs()? - self.server_cpu0?)
    }
    pub fn me_cpu(&self) -> Option<f64> {
        Some(self.me.cpu_secs()? - self.me_cpu0?)
    }
    pub fn elapsed(&self) -> f64 {
        self.t0.elapsed().as_secs_f64()
    }
}

/// Peak server RSS seen by the progress sampler.
pub static RSS_PEAK: AtomicU64 = AtomicU64::new(0);
static PHASE: Mutex<&'static str> = Mutex::new("start");

pub fn set_phase(p: &'static str) {
    *lock(&PHASE) = p;
}

/// One line per second on stderr with the counts, until the returned handle is dropped.
pub struct Progress(Option<tokio::task::JoinHandle<()>>);

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(h) = self.0.take() {
            h.abort();
        }
    }
}

pub fn progress(mode: &'static str, server: Option<Proc>, quiet: bool) -> Progress {
    let h = tokio::spawn(async move {
        let t0 = Instant::now();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.tick().await;
        let mut last_recv = 0u64;
        let mut last_cpu = server.as_ref().and_then(|p| p.cpu_secs());
        loop {
            tick.tick().await;
            let mut srv = String::new();
            if let Some(p) = &server {
                if let Some(r) = p.rss_kib() {
                    RSS_PEAK.fetch_max(r, Relaxed);
                    srv = format!(" | server rss {:.1}MiB", r as f64 / 1024.0);
                }
                let cpu = p.cpu_secs();
                if let (Some(a), Some(b)) = (last_cpu, cpu) {
                    srv.push_str(&format!(" cpu {:.0}%", (b - a) * 100.0));
                }
                last_cpu = cpu;
            }
            if quiet {
                continue;
            }
            let recv = get(K::Received) + get(K::ReceivedChurn);
            let phase = *lock(&PHASE);
            let mut line = format!(
                "[{mode} {:>4.0}s {phase}] alive {} subs {} fail {}",
                t0.elapsed().as_secs_f64(),
                get(K::Alive),
                get(K::Subscribed),
                fails_total(),
            );
            if get(K::Published) > 0 {
                line.push_str(&format!(
                    " | pub {} ok {} err {} | recv {} ({}/s) exp {}",
                    get(K::Published),
                    get(K::PublishedOk),
                    get(K::ApiErrors),
                    recv,
                    recv - last_recv,
                    get(K::Expected),
                ));
            }
            if get(K::ChurnOps) + get(K::ChurnFailures) > 0 {
                line.push_str(&format!(
                    " | churn {} fail {}",
                    get(K::ChurnOps),
                    get(K::ChurnFailures)
                ));
            }
            if get(K::MemberAdded) + get(K::MemberRemoved) > 0 {
                line.push_str(&format!(
                    " | added {} removed {} cycles {}",
                    get(K::MemberAdded),
                    get(K::MemberRemoved),
                    get(K::Cycles)
                ));
            }
            if get(K::Dropped) > 0 {
                line.push_str(&format!(" | dropped {}", get(K::Dropped)));
            }
            last_recv = recv;
            eprintln!("{line}{srv}");
        }
    });
    Progress(Some(h))
}

/// Round to `d` decimals for the JSON output.
pub fn round(x: f64, d: i32) -> f64 {
    let f = 10f64.powi(d);
    (x * f).round() / f
}
