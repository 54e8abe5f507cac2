//! One client connection as the core sees it: an id, the wire format it
//! speaks, and a bounded outbox that fan-out pushes encoded frames into.
//!
//! The outbox is a `VecDeque` behind a short mutex plus a `Notify`, rather
//! than a tokio mpsc channel, because an idle connection must cost almost
//! nothing: an empty `VecDeque` owns no heap memory, while an mpsc channel
//! allocates a block of slots up front. Pushing never waits: a connection
//! whose queue is full is a slow consumer and is closed (policy below), so a
//! fan-out never blocks on one recipient.
//!
//! A front-end may also register a [`DirectWrite`]: while its task is not
//! writing and nothing is queued, `send` writes the frame to the socket at
//! once (non-blocking, under the outbox lock) instead of queueing it and
//! waking the task. Only what the socket does not take is queued.

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::Notify;

use super::event::Event;

/// A connection's public id, `\d+\.\d+`, as every Pusher SDK requires.
///
/// The first part is random per process, so ids stay unique across restarts
/// and across the nodes of a cluster; the second is a per-process counter
/// scrambled by an odd multiplier (a bijection on `u32`), so ids never repeat
/// within a process yet do not reveal how many connections came before.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SocketId(Arc<str>);

impl SocketId {
    /// A fresh id, unique within this process and (with overwhelming
    /// likelihood) across processes.
    pub fn generate() -> Self {
        static PROCESS_PART: OnceLock<u32> = OnceLock::new();
        static COUNTER: AtomicU64 = AtomicU64::new(1);
        let process = *PROCESS_PART.get_or_init(|| rand::random_range(1..=u32::MAX / 2));
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        // High bits of the counter go into the first part only past 2^32 ids.
        let scrambled = (n as u32).wrapping_mul(0x9E37_79B1);
        let first = u64::from(process) + (n >> 32);
        SocketId(format!("{first}.{scrambled}").into())
    }

    /// An id received from outside (an API trigger's `socket_id`), if it
    /// has the right shape.
    pub fn parse(s: &str) -> Option<Self> {
        Self::is_valid(s).then(|| SocketId(s.into()))
    }

    /// An id assigned by a front-end (a Socket.IO sid), of any shape.
    pub fn from_raw(s: &str) -> Self {
        SocketId(s.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `s` has the `\d+\.\d+` shape (SDKs reject anything else).
    pub fn is_valid(s: &str) -> bool {
        match s.split_once('.') {
            Some((a, b)) => {
                !a.is_empty()
                    && !b.is_empty()
                    && a.bytes().all(|c| c.is_ascii_digit())
                    && b.bytes().all(|c| c.is_ascii_digit())
            }
            None => false,
        }
    }
}

impl fmt::Display for SocketId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for SocketId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SocketId({})", self.0)
    }
}

/// The wire formats, one per front-end. An [`Event`] caches one encoding
/// per variant, so two front-ends sharing a variant would receive each
/// other's frames (that happened when the slot was a plain `usize` shared by
/// convention). A new front-end adds a variant here; the cache is sized by
/// [`WireVariant::COUNT`] and indexed by the variant, so it cannot collide.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum WireVariant {
    /// pusher-js / Laravel Echo's pusher connector (`src/pusher`).
    Pusher,
    /// Laravel Echo's socket.io connector (`src/socketio`).
    SocketIo,
    /// Raw WebSocket connections of custom routes (`src/custom`).
    Raw,
    /// Wires of the core's own unit tests (two, for mixed-wire tests).
    #[cfg(test)]
    TestA,
    #[cfg(test)]
    TestB,
    /// Claimed like a production variant, by the test that checks claims.
    #[cfg(test)]
    TestExclusive,
}

impl WireVariant {
    /// Every variant, in index order.
    pub const ALL: &'static [WireVariant] = &[
        WireVariant::Pusher,
        WireVariant::SocketIo,
        WireVariant::Raw,
        #[cfg(test)]
        WireVariant::TestA,
        #[cfg(test)]
        WireVariant::TestB,
        #[cfg(test)]
        WireVariant::TestExclusive,
    ];
    /// How many encodings an event can cache.
    pub const COUNT: usize = Self::ALL.len();

    /// The variant's index in the encoding cache (a field-less enum's
    /// discriminant: free on the hot path, always `< COUNT`).
    #[inline]
    pub const fn index(self) -> usize {
        self as usize
    }
}

/// A wire format, as far as the core needs to know one: its variant (its
/// place in the per-event encoding cache) and the function that fills it.
/// The core never looks inside the bytes.
pub struct Wire {
    pub name: &'static str,
    pub variant: WireVariant,
    pub encode: fn(&Event) -> Bytes,
    /// The frame that tells a client why the server closes it (e.g. a
    /// `pusher:error`), sent just before the close frame; `None` if the
    /// wire has no such message.
    pub notice: fn(u16, &str) -> Option<Bytes>,
}

/// Which `Wire` claimed each production variant, so that a second `Wire`
/// value declared with a variant already in use is caught the first time a
/// connection uses it, not by clients receiving foreign frames.
static CLAIMED: [std::sync::atomic::AtomicPtr<Wire>; WireVariant::COUNT] =
    [const { std::sync::atomic::AtomicPtr::new(std::ptr::null_mut()) }; WireVariant::COUNT];

impl Wire {
    /// Panics if another `Wire` already uses this one's variant: a
    /// programming error that would corrupt mixed channels (checked once per
    /// new connection, off the fan-out path).
    fn claim(&'static self) {
        use std::sync::atomic::Ordering;
        #[cfg(test)]
        if matches!(self.variant, WireVariant::TestA | WireVariant::TestB) {
            return; // the unit tests' many little wires share these freely
        }
        let slot = &CLAIMED[self.variant.index()];
        let me = self as *const Wire as *mut Wire;
        if let Err(other) = slot.compare_exchange(
            std::ptr::null_mut(),
            me,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) && other != me
        {
            panic!(
                "wire {:?} reuses variant {:?}, already used by another wire",
                self.name, self.variant
            );
        }
    }
}

impl fmt::Debug for Wire {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)
    }
}

/// Why the server closes a connection from the outside (not the session
/// itself): carried to the session task, which sends the close frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseRequest {
    pub code: u16,
    pub reason: &'static str,
}

/// Close code for a consumer whose outbox overflowed: 4100 ("over
/// capacity") makes pusher-js back off a second and reconnect.
pub const SLOW_CONSUMER: CloseRequest = CloseRequest {
    code: 4100,
    reason: "slow consumer: too many messages queued",
};

/// One queued WebSocket message: the encoded payload and whether it goes out
/// as a binary frame. The payload is a shared `Bytes`, so a broadcast still
/// queues the same buffer to every recipient; the flag is one byte beside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub data: Bytes,
    pub binary: bool,
}

impl Frame {
    pub fn text(data: Bytes) -> Self {
        Frame {
            data,
            binary: false,
        }
    }

    pub fn binary(data: Bytes) -> Self {
        Frame { data, binary: true }
    }
}

/// Every existing wire speaks text, so plain bytes are a text frame.
impl From<Bytes> for Frame {
    fn from(data: Bytes) -> Self {
        Frame::text(data)
    }
}

/// What [`DirectWrite::try_write`] managed.
pub enum Direct {
    /// The whole frame went to the socket.
    Written,
    /// Nothing was written (the socket is full); queue the frame.
    NotNow,
    /// Part of it was written; these bytes (already framed for the
    /// transport) must follow before anything else.
    Partial(Bytes),
}

/// A transport that can take a frame immediately from any thread, so that
/// a fan-out writes to an idle connection's socket itself instead of
/// queueing the frame and waking the connection's task (a wake-up costs
/// about as much as the write). Only used while the session is not writing
/// and nothing is queued, under the outbox lock, so writes never interleave.
pub trait DirectWrite: Send + Sync {
    /// Writes `frame` (a payload for the connection's wire) without waiting.
    fn try_write(&self, frame: &Bytes) -> Direct;
}

#[derive(Default)]
struct OutboxState {
    /// Bytes of a frame a direct write left half-written, already framed.
    raw: Option<Bytes>,
    frames: VecDeque<Frame>,
    close: Option<CloseRequest>,
    /// The session is writing (it drained and has not released): direct
    /// writes must queue instead.
    busy: bool,
    direct: Option<Arc<dyn DirectWrite>>,
}

/// What a session takes out of its outbox in one go.
pub struct Drained {
    /// Already-framed bytes to write first, as they are.
    pub raw: Option<Bytes>,
    pub frames: VecDeque<Frame>,
    pub close: Option<CloseRequest>,
}

/// A connection registered with the core.
pub struct Connection {
    pub socket_id: SocketId,
    pub wire: &'static Wire,
    limit: usize,
    state: Mutex<OutboxState>,
    ready: Notify,
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("socket_id", &self.socket_id)
            .field("wire", &self.wire)
            .finish()
    }
}

impl Connection {
    /// `limit` is the number of frames that may wait in the outbox.
    pub fn new(wire: &'static Wire, limit: usize) -> Arc<Self> {
        Connection::with_id(SocketId::generate(), wire, limit)
    }

    /// A connection whose id the front-end assigned (Socket.IO sids).
    pub fn with_id(socket_id: SocketId, wire: &'static Wire, limit: usize) -> Arc<Self> {
        wire.claim();
        Arc::new(Connection {
            socket_id,
            wire,
            limit: limit.max(1),
            state: Mutex::new(OutboxState::default()),
            ready: Notify::new(),
        })
    }

    /// Queues an event encoded for this connection's wire (encoded at most
    /// once per wire for all recipients). Returns false when the connection
    /// was dropped as a slow consumer or is closing.
    pub fn send_event(&self, event: &Event) -> bool {
        match event.frame(self.wire) {
            Some(frame) => self.send(frame),
            None => true,
        }
    }

    /// Queues a frame (text when given plain `Bytes`). Never blocks; an
    /// overflowing queue closes the connection with [`SLOW_CONSUMER`] and
    /// frees what it held.
    pub fn send(&self, frame: impl Into<Frame>) -> bool {
        let frame = frame.into();
        let mut state = self.state.lock();
        if state.close.is_some() {
            return false;
        }
        if !state.busy
            && !frame.binary
            && state.raw.is_none()
            && state.frames.is_empty()
            && let Some(direct) = &state.direct
        {
            match direct.try_write(&frame.data) {
                Direct::Written => return true,
                Direct::Partial(rest) => {
                    state.raw = Some(rest);
                    drop(state);
                    self.ready.notify_one();
                    return true;
                }
                Direct::NotNow => {}
            }
        }
        if state.frames.len() >= self.limit {
            state.frames = VecDeque::new();
            state.close = Some(SLOW_CONSUMER);
            drop(state);
            self.ready.notify_one();
            return false;
        }
        let was_empty = state.frames.is_empty();
        state.frames.push_back(frame);
        drop(state);
        // One wake-up per batch: the session drains everything queued.
        if was_empty {
            self.ready.notify_one();
        }
        true
    }

    /// Asks the session to send `frames` (e.g. an error event) and then close.
    pub fn close_with(&self, last_frame: Option<Bytes>, close: CloseRequest) {
        let mut state = self.state.lock();
        if state.close.is_some() {
            return;
        }
        if let Some(frame) = last_frame {
            state.frames.push_back(Frame::text(frame));
        }
        state.close = Some(close);
        drop(state);
        self.ready.notify_one();
    }

    /// Closes the connection from outside its task (terminate, kick): the
    /// wire's notice first, then the close frame with `code`.
    pub fn terminate(&self, code: u16, reason: &'static str) {
        self.close_with(
            (self.wire.notice)(code, reason),
            CloseRequest { code, reason },
        );
    }

    /// Waits until something was queued (or a close was requested).
    pub async fn ready(&self) {
        self.ready.notified().await
    }

    /// Takes everything queued. The queue's buffer goes with it, so an idle
    /// connection holds no outbox memory between bursts. Until
    /// [`Connection::release`], the caller is the only writer: frames sent
    /// meanwhile are queued, not written directly.
    pub fn drain(&self) -> Drained {
        let mut state = self.state.lock();
        state.busy = true;
        Drained {
            raw: state.raw.take(),
            frames: std::mem::take(&mut state.frames),
            close: state.close.clone(),
        }
    }

    /// Ends a write started by [`Connection::drain`]: direct writes resume
    /// if nothing was queued meanwhile. Returns false if something was (drain
    /// again).
    pub fn release(&self) -> bool {
        let mut state = self.state.lock();
        if state.raw.is_some() || !state.frames.is_empty() || state.close.is_some() {
            return false;
        }
        state.busy = false;
        true
    }

    /// Lets fan-outs write to the transport directly while the session is
    /// idle (`None` to stop, e.g. when the session ends).
    pub fn set_direct(&self, direct: Option<Arc<dyn DirectWrite>>) {
        self.state.lock().direct = direct;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain(_: &Event) -> Bytes {
        Bytes::from_static(b"x")
    }
    static TEST_WIRE: Wire = Wire {
        name: "test",
        variant: WireVariant::TestA,
        encode: plain,
        notice: |_, _| None,
    };

    static IMPOSTOR_A: Wire = Wire {
        name: "impostor-a",
        variant: WireVariant::TestExclusive,
        encode: plain,
        notice: |_, _| None,
    };
    static IMPOSTOR_B: Wire = Wire {
        name: "impostor-b",
        variant: WireVariant::TestExclusive,
        encode: plain,
        notice: |_, _| None,
    };

    #[test]
    #[should_panic(expected = "reuses variant TestExclusive")]
    fn two_wires_cannot_share_a_variant() {
        let _a = Connection::new(&IMPOSTOR_A, 1);
        let _b = Connection::new(&IMPOSTOR_B, 1);
    }

    #[test]
    fn socket_ids_are_unique_and_well_formed() {
        let ids: std::collections::HashSet<_> = (0..10_000).map(|_| SocketId::generate()).collect();
        assert_eq!(ids.len(), 10_000);
        assert!(ids.iter().all(|id| SocketId::is_valid(id.as_str())));
        assert!(!SocketId::is_valid("1.2.3"));
        assert!(!SocketId::is_valid("abc.1"));
        assert!(!SocketId::is_valid(".1"));
    }

    #[test]
    fn overflow_closes_as_slow_consumer() {
        let conn = Connection::new(&TEST_WIRE, 2);
        assert!(conn.send(Bytes::from_static(b"1")));
        assert!(conn.send(Bytes::from_static(b"2")));
        assert!(!conn.send(Bytes::from_static(b"3")));
        let drained = conn.drain();
        assert!(drained.frames.is_empty(), "an overflowed queue is freed");
        assert_eq!(drained.close, Some(SLOW_CONSUMER));
        assert!(!conn.send(Bytes::from_static(b"4")));
    }

    /// Takes `room` bytes in all, then writes nothing.
    struct FakeSocket {
        room: Mutex<usize>,
        written: Mutex<Vec<u8>>,
    }

    impl DirectWrite for FakeSocket {
        fn try_write(&self, frame: &Bytes) -> Direct {
            let mut room = self.room.lock();
            let n = frame.len().min(*room);
            *room -= n;
            self.written.lock().extend_from_slice(&frame[..n]);
            match n {
                0 => Direct::NotNow,
                n if n == frame.len() => Direct::Written,
                n => Direct::Partial(frame.slice(n..)),
            }
        }
    }

    #[test]
    fn direct_writes_only_while_idle_and_in_order() {
        let conn = Connection::new(&TEST_WIRE, 8);
        let socket = Arc::new(FakeSocket {
            room: Mutex::new(5),
            written: Mutex::new(Vec::new()),
        });
        conn.set_direct(Some(socket.clone()));
        assert!(conn.send(Bytes::from_static(b"abc")));
        assert_eq!(&socket.written.lock()[..], b"abc");
        // Half of this one fits: the rest waits, framed, for the task.
        assert!(conn.send(Bytes::from_static(b"defg")));
        assert!(conn.send(Bytes::from_static(b"h")));
        assert_eq!(&socket.written.lock()[..], b"abcde");
        let drained = conn.drain();
        assert_eq!(drained.raw.as_deref(), Some(&b"fg"[..]));
        assert_eq!(drained.frames, vec![Frame::text(Bytes::from_static(b"h"))]);
        // While the task writes, frames queue even if the socket has room.
        *socket.room.lock() = 100;
        assert!(conn.send(Bytes::from_static(b"i")));
        assert_eq!(&socket.written.lock()[..], b"abcde");
        assert!(!conn.release(), "something was queued meanwhile");
        assert_eq!(
            conn.drain().frames,
            vec![Frame::text(Bytes::from_static(b"i"))]
        );
        assert!(conn.release());
        assert!(conn.send(Bytes::from_static(b"j")));
        assert_eq!(&socket.written.lock()[..], b"abcdej");
        conn.set_direct(None);
        assert!(conn.send(Bytes::from_static(b"k")));
        assert_eq!(
            conn.drain().frames,
            vec![Frame::text(Bytes::from_static(b"k"))]
        );
    }

    #[test]
    fn close_with_keeps_the_last_frame_first() {
        let conn = Connection::new(&TEST_WIRE, 8);
        conn.send(Bytes::from_static(b"a"));
        conn.close_with(
            Some(Bytes::from_static(b"bye")),
            CloseRequest {
                code: 4009,
                reason: "terminated",
            },
        );
        let drained = conn.drain();
        assert_eq!(
            drained.frames,
            vec![
                Frame::text(Bytes::from_static(b"a")),
                Frame::text(Bytes::from_static(b"bye"))
            ]
        );
        assert_eq!(drained.close.map(|c| c.code), Some(4009));
    }
}
