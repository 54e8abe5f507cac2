//! Limits on what one client IP address or one app may use: concurrent
//! connections per IP (a guard released on drop) and request rates (token
//! buckets per IP or per app id).
//!
//! Memory is bounded: a connection counter exists only while the IP has a
//! connection open, and a rate bucket is evicted once it has been idle long
//! enough to be full again (it then carries no information). The rate table
//! also has a hard cap on entries; a key that finds it full even after
//! eviction is let through untracked rather than refused, so that an attacker
//! with many addresses cannot lock out everybody else by filling the table.

use std::collections::HashMap;
use std::hash::Hash;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

/// Most keys a [`RateLimiter`] tracks at once (about 48 bytes each).
const MAX_RATE_ENTRIES: usize = 100_000;
/// How often idle buckets are swept, at most.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// Concurrent connections per client IP.
pub struct ConnectionLimiter {
    max: u64,
    open: Arc<Mutex<HashMap<IpAddr, u64>>>,
}

/// Held for the life of one connection (moved along with the socket into
/// an upgraded WebSocket); frees its slot on drop.
pub struct ConnectionGuard {
    ip: IpAddr,
    open: Arc<Mutex<HashMap<IpAddr, u64>>>,
}

/// The IP already has its maximum of connections open.
#[derive(Debug)]
pub struct TooManyConnections;

impl ConnectionLimiter {
    /// `max` = 0 means unlimited (no guard, no table entry).
    pub fn new(max: u64) -> Self {
        ConnectionLimiter {
            max,
            open: Arc::default(),
        }
    }

    /// A slot for one more connection from `ip` (`None` when unlimited),
    /// or an error when it already has `max` open.
    pub fn acquire(&self, ip: IpAddr) -> Result<Option<ConnectionGuard>, TooManyConnections> {
        if self.max == 0 {
            return Ok(None);
        }
        let mut open = self.open.lock();
        let count = open.entry(ip).or_insert(0);
        if *count >= self.max {
            return Err(TooManyConnections);
        }
        *count += 1;
        Ok(Some(ConnectionGuard {
            ip,
            open: self.open.clone(),
        }))
    }

    /// Connections open from `ip` (tests, metrics).
    pub fn open(&self, ip: IpAddr) -> u64 {
        self.open.lock().get(&ip).copied().unwrap_or(0)
    }

    /// IPs with at least one connection open.
    pub fn tracked(&self) -> usize {
        self.open.lock().len()
    }
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        let mut open = self.open.lock();
        if let Some(count) = open.get_mut(&self.ip) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

/// Token buckets keyed by IP or app id: `rate` requests per second with a
/// burst of one second's worth.
pub struct RateLimiter<K> {
    inner: Mutex<Buckets<K>>,
}

struct Buckets<K> {
    map: HashMap<K, Bucket>,
    last_sweep: Instant,
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

/// An accepted stream with its connection slot: hyper hands the whole
/// value to an upgraded WebSocket, so the slot lives as long as the socket.
pub struct Guarded<I> {
    pub io: I,
    pub guard: Option<ConnectionGuard>,
}

impl<I: AsyncRead + Unpin> AsyncRead for Guarded<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Guarded<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

impl<K: Hash + Eq + Clone> Default for RateLimiter<K> {
    fn default() -> Self {
        RateLimiter {
            inner: Mutex::new(Buckets {
                map: HashMap::new(),
                last_sweep: Instant::now(),
            }),
        }
    }
}

impl<K: Hash + Eq + Clone> RateLimiter<K> {
    /// Takes one token for `key` at `rate` per second; false when none is
    /// left. A rate of 0 means unlimited.
    pub fn check(&self, key: &K, rate: u32) -> bool {
        self.check_at(key, rate, Instant::now())
    }

    fn check_at(&self, key: &K, rate: u32, now: Instant) -> bool {
        if rate == 0 {
            return true;
        }
        let mut inner = self.inner.lock();
        // At most one sweep per SWEEP_EVERY, full table or not: a table kept
        // full by many addresses must not cost a scan per request (new keys
        // pass untracked until the next sweep makes room, below).
        if now.saturating_duration_since(inner.last_sweep) >= SWEEP_EVERY {
            inner.last_sweep = now;
            // A bucket idle long enough to have refilled is the same as no
            // bucket (a bucket refills completely within one second).
            inner
                .map
                .retain(|_, b| now.saturating_duration_since(b.at) < Duration::from_secs(1));
        }
        if inner.map.len() >= MAX_RATE_ENTRIES && !inner.map.contains_key(key) {
            return true;
        }
        let cap = f64::from(rate);
        let bucket = inner.map.entry(key.clone()).or_insert(Bucket {
            tokens: cap,
            at: now,
        });
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * cap).min(cap);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Keys currently tracked (tests).
    pub fn tracked(&self) -> usize {
        self.inner.lock().map.len()
    }
}

/// Refusals answered at once, at most: past that, an address that keeps
/// opening connections gets them closed without an answer, so the limit
/// never costs more descriptors and tasks than it saves.
const MAX_REFUSALS_IN_FLIGHT: usize = 64;

static REFUSALS_IN_FLIGHT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// One refusal in flight (see [`MAX_REFUSALS_IN_FLIGHT`]).
struct RefusalSlot;

impl Drop for RefusalSlot {
    fn drop(&mut self) {
        REFUSALS_IN_FLIGHT.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

/// The answer to a connection over the per-IP limit (see
/// [`answer_over_limit`]), or `None` — the stream is then simply closed —
/// when [`MAX_REFUSALS_IN_FLIGHT`] answers are already being written.
pub fn refuse_over_limit(
    stream: TcpStream,
    max: u64,
) -> Option<impl Future<Output = ()> + Send + 'static> {
    use std::sync::atomic::Ordering;
    if REFUSALS_IN_FLIGHT.fetch_add(1, Ordering::AcqRel) >= MAX_REFUSALS_IN_FLIGHT {
        REFUSALS_IN_FLIGHT.fetch_sub(1, Ordering::AcqRel);
        return None;
    }
    let slot = RefusalSlot;
    Some(async move {
        answer_over_limit(stream, max).await;
        drop(slot);
    })
}

/// Answers a connection over the per-IP limit with a 429 a person can read,
/// then closes. Bounded: one second to write, and at most 64 KiB of the
/// request drained (closing with unread bytes would reset the connection
/// and the client might never see the answer).
async fn answer_over_limit(mut stream: TcpStream, max: u64) {
    let body = format!(
        "{{\"error\":\"too many connections from your address (at most {max} at once); close some and retry\"}}"
    );
    let response = format!(
        "HTTP/1.1 429 Too Many Requests\r\nContent-Type: application/json\r\nContent-Length: {}\r\nRetry-After: 1\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let exchange = async {
        stream.write_all(response.as_bytes()).await?;
        stream.shutdown().await?;
        let mut sink = [0u8; 4096];
        let mut drained = 0;
        while drained < 64 * 1024 {
            match stream.read(&mut sink).await? {
                0 => break,
                n => drained += n,
            }
        }
        Ok::<(), std::io::Error>(())
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), exchange).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_slots_are_released_on_drop() {
        let limiter = ConnectionLimiter::new(2);
        let ip: IpAddr = [10, 0, 0, 1].into();
        let a = limiter.acquire(ip).expect("first");
        let b = limiter.acquire(ip).expect("second");
        assert!(limiter.acquire(ip).is_err());
        assert!(limiter.acquire([10, 0, 0, 2].into()).is_ok());
        drop(a);
        let c = limiter.acquire(ip).expect("freed slot");
        assert_eq!(limiter.open(ip), 2);
        drop(c);
        drop(b);
        assert_eq!(limiter.tracked(), 0, "no entry left for idle IPs");
    }

    #[test]
    fn buckets_refill_and_idle_ones_are_evicted() {
        let limiter = RateLimiter::default();
        let t0 = Instant::now();
        assert!((0..5).all(|_| limiter.check_at(&"a", 5, t0)));
        assert!(!limiter.check_at(&"a", 5, t0));
        // 200 ms later one token is back.
        let t1 = t0 + Duration::from_millis(200);
        assert!(limiter.check_at(&"a", 5, t1));
        assert!(!limiter.check_at(&"a", 5, t1));
        // After a second idle the sweep drops it.
        let t2 = t1 + Duration::from_secs(2);
        assert!(limiter.check_at(&"b", 5, t2));
        assert_eq!(limiter.tracked(), 1);
        assert!(limiter.check_at(&"c", 0, t2), "0 is unlimited");
    }
}
