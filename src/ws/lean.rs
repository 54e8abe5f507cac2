//! A lean server-side WebSocket connection (RFC 6455) for front-ends that
//! hold many mostly idle connections and fan the same frames out to them.
//!
//! What makes it lean:
//!
//! - **No per-connection read buffer while idle.** Reads go into a scratch
//!   buffer on the stack of the reading call; only the bytes of a frame that
//!   has not fully arrived are copied to the heap, and that buffer is freed as
//!   soon as the frame completes. (A `FramedRead`-based codec keeps 8 KiB per
//!   connection for its whole life.)
//! - **No per-connection write buffer while idle.** A batch of outgoing
//!   frames is framed into a per-thread scratch buffer and written with one
//!   `write` call; only what the kernel did not take is kept, until flushed.
//! - **One syscall per batch.** Everything the session drained from its
//!   outbox goes out in one write (a header of 2–10 bytes is written in front
//!   of each shared payload; server frames are unmasked, so there is nothing
//!   else to do per recipient).
//!
//! Validation follows RFC 6455 §5: client frames must be masked; reserved
//! bits and opcodes are refused (no extension is negotiated); control frames
//! are at most 125 bytes and never fragmented; continuation frames need an
//! open message and data frames must not interrupt one; close codes and
//! close reasons are checked; text messages must be UTF-8, also across
//! fragments (checked as fragments arrive, so a bad message fails early).
//! Protocol errors close with 1002, invalid UTF-8 with 1007 and messages over
//! the limit with 1009. Pings are answered with pongs and a close frame with
//! a close frame.
//!
//! The protocol state ([`Codec`]) is separate from the socket so that it can
//! be tested on byte slices.

use std::cell::RefCell;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio_rustls::rustls::ServerConnection;

use super::lean_io::{DirectWriter, Transport};
use crate::core::connection::DirectWrite;

const OP_CONTINUATION: u8 = 0x0;
pub(super) const OP_TEXT: u8 = 0x1;
const OP_BINARY: u8 = 0x2;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xA;

/// Close codes the codec sends by itself.
pub const NORMAL_CLOSURE: u16 = 1000;
pub const PROTOCOL_ERROR: u16 = 1002;
pub const INVALID_DATA: u16 = 1007;
pub const MESSAGE_TOO_BIG: u16 = 1009;

/// Bytes read per `read` call into the stack scratch buffer.
const READ_CHUNK: usize = 8 * 1024;
/// Reads per wake-up before yielding to other connections.
const MAX_READS_PER_WAKE: usize = 32;
/// The per-thread write scratch buffer is given back above this size.
const SCRATCH_KEEP: usize = 256 * 1024;

/// A message or control frame received from the client. Pings are already
/// answered and close frames handled by the time the caller sees anything.
#[derive(Debug, PartialEq, Eq)]
pub enum Incoming<'a> {
    Text(&'a str),
    Binary(&'a [u8]),
    Ping(&'a [u8]),
    Pong(&'a [u8]),
}

/// The state a connection is in after reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Open; nothing more to read right now.
    Open,
    /// The client sent a close frame (the answer is queued) or ended the
    /// stream.
    Closed,
    /// The client broke the protocol; a close frame with this code is queued.
    Failed(u16),
}

/// A text or binary message arriving in fragments.
struct Fragmented {
    text: bool,
    data: Vec<u8>,
    /// How much of `data` is known to be valid UTF-8 (text only).
    checked: usize,
}

/// The protocol state of one connection, without the socket.
pub struct Codec {
    max_message: usize,
    /// A fragmented message being assembled (boxed: rare, and keeps an idle
    /// connection small).
    message: Option<Box<Fragmented>>,
    /// Framed bytes waiting to be written: control answers, or the part of a
    /// batch the socket did not take yet. Unallocated when empty.
    out: Vec<u8>,
    close_sent: bool,
    /// The close frame owed to the client (answer to its close, or our
    /// protocol error), written after whatever the caller still queues for
    /// the messages that came before it.
    close_owed: Option<([u8; 2], usize)>,
    /// Input is over: close received, protocol failure or end of stream.
    done: bool,
}

enum Frame {
    /// A complete frame of this many bytes was handled.
    Handled(usize),
    /// The frame has not fully arrived.
    Incomplete,
}

impl Codec {
    /// `max_message` is the largest message (after reassembly) accepted.
    pub fn new(max_message: usize) -> Self {
        Codec {
            max_message,
            message: None,
            out: Vec::new(),
            close_sent: false,
            close_owed: None,
            done: false,
        }
    }

    /// Whether a close frame was queued or sent.
    pub fn close_sent(&self) -> bool {
        self.close_sent
    }

    /// Framed bytes waiting to be written.
    pub fn pending_output(&self) -> &[u8] {
        &self.out
    }

    /// Handles the complete frames at the start of `buf` (unmasking them in
    /// place) and returns how many bytes they took, plus the end state if the
    /// input is over (close, error). Bytes of an incomplete frame are left.
    pub fn feed(
        &mut self,
        buf: &mut [u8],
        on: &mut impl FnMut(Incoming<'_>),
    ) -> (usize, Option<Step>) {
        let mut used = 0;
        while !self.done {
            match self.frame(&mut buf[used..], on) {
                Ok(Frame::Handled(n)) => used += n,
                Ok(Frame::Incomplete) => return (used, None),
                Err(step) => {
                    self.done = true;
                    self.message = None;
                    return (used, Some(step));
                }
            }
        }
        (used, Some(Step::Closed))
    }

    fn fail(&mut self, code: u16) -> Step {
        if !self.close_sent {
            self.close_sent = true;
            self.close_owed = Some((code.to_be_bytes(), 2));
        }
        Step::Failed(code)
    }

    /// Queues the close frame owed after [`Step::Closed`] or
    /// [`Step::Failed`], behind anything queued so far.
    pub fn queue_owed_close(&mut self) {
        if let Some((code, len)) = self.close_owed.take() {
            push_frame(&mut self.out, OP_CLOSE, &code[..len]);
        }
    }

    /// Queues a close frame (once).
    pub fn queue_close(&mut self, code: u16, reason: &str) {
        if self.close_sent {
            return;
        }
        self.close_sent = true;
        // A control payload is at most 125 bytes: the code and 123 of reason.
        let mut end = reason.len().min(123);
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        let mut payload = [0u8; 125];
        payload[..2].copy_from_slice(&code.to_be_bytes());
        payload[2..2 + end].copy_from_slice(&reason.as_bytes()[..end]);
        push_frame(&mut self.out, OP_CLOSE, &payload[..2 + end]);
    }

    fn frame(&mut self, buf: &mut [u8], on: &mut impl FnMut(Incoming<'_>)) -> Result<Frame, Step> {
        let [b0, b1, ..] = *buf else {
            return Ok(Frame::Incomplete);
        };
        let fin = b0 & 0x80 != 0;
        let opcode = b0 & 0x0F;
        if b0 & 0x70 != 0 {
            return Err(self.fail(PROTOCOL_ERROR)); // no extension negotiated
        }
        if !matches!(
            opcode,
            OP_CONTINUATION | OP_TEXT | OP_BINARY | OP_CLOSE | OP_PING | OP_PONG
        ) {
            return Err(self.fail(PROTOCOL_ERROR));
        }
        if b1 & 0x80 == 0 {
            return Err(self.fail(PROTOCOL_ERROR)); // clients must mask
        }
        let (len, header) = match b1 & 0x7F {
            126 => match buf.get(2..4) {
                Some(b) => (u64::from(u16::from_be_bytes([b[0], b[1]])), 4),
                None => return Ok(Frame::Incomplete),
            },
            127 => match buf.get(2..10) {
                Some(b) => {
                    let mut n = [0u8; 8];
                    n.copy_from_slice(b);
                    let len = u64::from_be_bytes(n);
                    if len >> 63 != 0 {
                        return Err(self.fail(PROTOCOL_ERROR));
                    }
                    (len, 10)
                }
                None => return Ok(Frame::Incomplete),
            },
            n => (u64::from(n), 2),
        };
        if opcode >= OP_CLOSE {
            if !fin || len > 125 {
                return Err(self.fail(PROTOCOL_ERROR));
            }
        } else {
            // Sequencing and size are known from the header: fail before
            // waiting for (or buffering) the payload.
            let so_far = match (&self.message, opcode) {
                (None, OP_CONTINUATION) | (Some(_), OP_TEXT | OP_BINARY) => {
                    return Err(self.fail(PROTOCOL_ERROR));
                }
                (Some(m), _) => m.data.len(),
                (None, _) => 0,
            };
            if len > self.max_message.saturating_sub(so_far) as u64 {
                return Err(self.fail(MESSAGE_TOO_BIG));
            }
        }
        // `len` is at most `max_message` or 125 here, so it fits a usize.
        let len = len as usize;
        let total = header + 4 + len;
        if buf.len() < total {
            return Ok(Frame::Incomplete);
        }
        let mut mask = [0u8; 4];
        mask.copy_from_slice(&buf[header..header + 4]);
        let payload = &mut buf[header + 4..total];
        unmask(payload, mask);
        self.handle(opcode, fin, payload, on)?;
        Ok(Frame::Handled(total))
    }

    fn handle(
        &mut self,
        opcode: u8,
        fin: bool,
        payload: &[u8],
        on: &mut impl FnMut(Incoming<'_>),
    ) -> Result<(), Step> {
        match opcode {
            OP_TEXT | OP_BINARY if fin => {
                if opcode == OP_BINARY {
                    on(Incoming::Binary(payload));
                } else {
                    match simdutf8::basic::from_utf8(payload) {
                        Ok(text) => on(Incoming::Text(text)),
                        Err(_) => return Err(self.fail(INVALID_DATA)),
                    }
                }
            }
            OP_TEXT | OP_BINARY => {
                let mut message = Box::new(Fragmented {
                    text: opcode == OP_TEXT,
                    data: payload.to_vec(),
                    checked: 0,
                });
                if message.text && !check_utf8(&mut message, false) {
                    return Err(self.fail(INVALID_DATA));
                }
                self.message = Some(message);
            }
            OP_CONTINUATION => {
                let Some(message) = self.message.as_mut() else {
                    return Err(self.fail(PROTOCOL_ERROR));
                };
                message.data.extend_from_slice(payload);
                if message.text && !check_utf8(message, fin) {
                    return Err(self.fail(INVALID_DATA));
                }
                if fin && let Some(message) = self.message.take() {
                    if message.text {
                        match std::str::from_utf8(&message.data) {
                            Ok(text) => on(Incoming::Text(text)),
                            Err(_) => return Err(self.fail(INVALID_DATA)),
                        }
                    } else {
                        on(Incoming::Binary(&message.data));
                    }
                }
            }
            OP_CLOSE => {
                let code = match payload {
                    [] => None,
                    [_] => return Err(self.fail(PROTOCOL_ERROR)),
                    [a, b, reason @ ..] => {
                        let code = u16::from_be_bytes([*a, *b]);
                        if !valid_close_code(code) {
                            return Err(self.fail(PROTOCOL_ERROR));
                        }
                        if simdutf8::basic::from_utf8(reason).is_err() {
                            return Err(self.fail(INVALID_DATA));
                        }
                        Some(code)
                    }
                };
                if !self.close_sent {
                    self.close_sent = true;
                    self.close_owed = Some(match code {
                        Some(code) => (code.to_be_bytes(), 2),
                        None => ([0; 2], 0),
                    });
                }
                return Err(Step::Closed);
            }
            OP_PING => {
                // A client that floods pings and never reads is bounded by
                // the session: it flushes these pongs before reading more,
                // so the flood stalls on TCP backpressure and is closed
                // after `write_timeout` (at most one read burst, 256 KiB,
                // of pongs is held meanwhile).
                if !self.close_sent {
                    push_frame(&mut self.out, OP_PONG, payload);
                }
                on(Incoming::Ping(payload));
            }
            _ => on(Incoming::Pong(payload)),
        }
        Ok(())
    }
}

/// Checks the UTF-8 of a fragmented text message as far as it can be
/// decided: a sequence cut at the end of a fragment waits for the next one.
fn check_utf8(message: &mut Fragmented, fin: bool) -> bool {
    match simdutf8::compat::from_utf8(&message.data[message.checked..]) {
        Ok(_) => {
            message.checked = message.data.len();
            true
        }
        Err(e) if e.error_len().is_none() && !fin => {
            message.checked += e.valid_up_to();
            true
        }
        Err(_) => false,
    }
}

/// Close codes a peer may send (RFC 6455 §7.4; 3000–4999 are for
/// libraries and applications).
fn valid_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1011 | 3000..=4999)
}

/// XORs `payload` with the 4-byte `mask`, eight bytes at a time.
fn unmask(payload: &mut [u8], mask: [u8; 4]) {
    let wide = u64::from_ne_bytes([
        mask[0], mask[1], mask[2], mask[3], mask[0], mask[1], mask[2], mask[3],
    ]);
    let mut chunks = payload.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        chunk.copy_from_slice(&(u64::from_ne_bytes(word) ^ wide).to_ne_bytes());
    }
    for (i, byte) in chunks.into_remainder().iter_mut().enumerate() {
        *byte ^= mask[i & 3];
    }
}

/// Appends an unmasked, unfragmented server frame.
fn push_frame(out: &mut Vec<u8>, opcode: u8, payload: &[u8]) {
    push_header(out, opcode, payload.len());
    out.extend_from_slice(payload);
}

fn push_header(out: &mut Vec<u8>, opcode: u8, len: usize) {
    let (header, n) = header(opcode, len);
    out.extend_from_slice(&header[..n]);
}

/// The header of an unmasked, unfragmented frame, and its length.
pub(super) fn header(opcode: u8, len: usize) -> ([u8; 10], usize) {
    let mut h = [0u8; 10];
    h[0] = 0x80 | opcode;
    if len < 126 {
        h[1] = len as u8;
        (h, 2)
    } else if let Ok(len) = u16::try_from(len) {
        h[1] = 126;
        h[2..4].copy_from_slice(&len.to_be_bytes());
        (h, 4)
    } else {
        h[1] = 127;
        h[2..10].copy_from_slice(&(len as u64).to_be_bytes());
        (h, 10)
    }
}

/// The size of a frame header for a payload of `len` bytes.
fn header_len(len: usize) -> usize {
    match len {
        0..126 => 2,
        126..=0xFFFF => 4,
        _ => 10,
    }
}

thread_local! {
    /// Where a batch is framed before its single write.
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// An upgraded WebSocket connection on a TCP stream, plain or TLS (server
/// side).
pub struct LeanSocket {
    /// Shared with the fan-out's direct writer (see [`DirectWrite`]).
    stream: Arc<Transport>,
    /// Bytes of a frame that has not fully arrived (or, right after the
    /// upgrade, bytes the HTTP layer read ahead). Unallocated when empty.
    partial: Vec<u8>,
    /// Look again without waiting for the socket: `partial` holds bytes not
    /// looked at yet (the read-ahead), or rustls may hold plaintext.
    unread: bool,
    eof: bool,
    codec: Codec,
    /// The per-IP connection slot, held as long as the socket (boxed: one
    /// pointer on every idle connection, and none when the limit is off).
    _slot: Option<Box<crate::limits::ConnectionGuard>>,
}

impl LeanSocket {
    /// Wraps a stream after the handshake; `read_ahead` are bytes already
    /// read from it past the HTTP request.
    pub fn new(stream: TcpStream, read_ahead: &[u8], max_message: usize) -> Self {
        LeanSocket {
            stream: Transport::plain(stream),
            partial: read_ahead.to_vec(),
            unread: !read_ahead.is_empty(),
            eof: false,
            codec: Codec::new(max_message),
            _slot: None,
        }
    }

    /// Wraps a TLS connection after the handshake: the TCP stream and the
    /// rustls session taken out of tokio-rustls' `TlsStream`, and the
    /// plaintext bytes already read past the HTTP request.
    pub fn new_tls(
        stream: TcpStream,
        tls: ServerConnection,
        read_ahead: &[u8],
        max_message: usize,
    ) -> Self {
        LeanSocket {
            stream: Transport::tls(stream, tls),
            partial: read_ahead.to_vec(),
            // rustls may already hold plaintext the socket will not signal.
            unread: true,
            eof: false,
            codec: Codec::new(max_message),
            _slot: None,
        }
    }

    /// Takes the stream back from hyper's upgrade (with the bytes it read
    /// ahead): a plain TCP stream, or a TLS stream from the built-in TLS,
    /// either carrying its per-IP connection slot
    /// ([`crate::limits::Guarded`], as the server accepts them), which the
    /// socket then keeps. Fails for any other transport.
    pub fn from_upgraded(upgraded: Upgraded, max_message: usize) -> Result<Self, Upgraded> {
        type Plain = crate::limits::Guarded<TcpStream>;
        type Tls = tokio_rustls::server::TlsStream<crate::limits::Guarded<TcpStream>>;
        let upgraded = match upgraded.downcast::<TokioIo<Plain>>() {
            Ok(parts) => {
                let guarded = parts.io.into_inner();
                let mut socket = LeanSocket::new(guarded.io, &parts.read_buf, max_message);
                socket._slot = guarded.guard.map(Box::new);
                return Ok(socket);
            }
            Err(upgraded) => upgraded,
        };
        let upgraded = match upgraded.downcast::<TokioIo<Tls>>() {
            Ok(parts) => {
                let (guarded, tls) = parts.io.into_inner().into_inner();
                let mut socket = LeanSocket::new_tls(guarded.io, tls, &parts.read_buf, max_message);
                socket._slot = guarded.guard.map(Box::new);
                return Ok(socket);
            }
            Err(upgraded) => upgraded,
        };
        let upgraded = match upgraded.downcast::<TokioIo<TcpStream>>() {
            Ok(parts) => {
                return Ok(LeanSocket::new(
                    parts.io.into_inner(),
                    &parts.read_buf,
                    max_message,
                ));
            }
            Err(upgraded) => upgraded,
        };
        let parts = upgraded.downcast::<TokioIo<tokio_rustls::server::TlsStream<TcpStream>>>()?;
        let (tcp, tls) = parts.io.into_inner().into_inner();
        Ok(LeanSocket::new_tls(tcp, tls, &parts.read_buf, max_message))
    }

    /// Waits until there is something to read (or the read-ahead to look at).
    ///
    /// Polls the stream's read readiness directly rather than through
    /// `TcpStream::readable`, whose future carries a waiter node: this one is
    /// a pointer, and every idle connection holds one.
    pub fn readable(&self) -> impl Future<Output = io::Result<()>> + '_ {
        std::future::poll_fn(move |cx| {
            if self.eof {
                return std::task::Poll::Ready(Ok(()));
            }
            if self.unread {
                // Counts against the task's budget like a socket read would,
                // so a client streaming over TLS still lets others run.
                let coop = std::task::ready!(tokio::task::coop::poll_proceed(cx));
                coop.made_progress();
                return std::task::Poll::Ready(Ok(()));
            }
            self.stream.poll_read_ready(cx)
        })
    }

    /// Reads what the socket has and hands each complete message to `on`.
    /// Call after [`LeanSocket::readable`]; then flush if
    /// [`LeanSocket::wants_flush`] (pongs, close answers).
    pub fn read_available(&mut self, mut on: impl FnMut(Incoming<'_>)) -> Step {
        if self.eof || self.codec.done {
            return Step::Closed;
        }
        if std::mem::take(&mut self.unread)
            && let Some(step) = self.feed_partial(&mut on)
        {
            return step;
        }
        let mut scratch = [0u8; READ_CHUNK];
        for _ in 0..MAX_READS_PER_WAKE {
            let n = match self.stream.read(&mut scratch) {
                Ok(0) => {
                    self.eof = true;
                    self.partial = Vec::new();
                    return Step::Closed;
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Step::Open,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    self.eof = true;
                    return Step::Closed;
                }
            };
            let step = if self.partial.is_empty() {
                let (used, step) = self.codec.feed(&mut scratch[..n], &mut on);
                if step.is_none() && used < n {
                    self.partial.extend_from_slice(&scratch[used..n]);
                }
                step
            } else {
                self.partial.extend_from_slice(&scratch[..n]);
                self.feed_partial(&mut on)
            };
            if let Some(step) = step {
                self.partial = Vec::new();
                return step;
            }
        }
        // Over TLS, rustls may still hold plaintext. The socket's readiness
        // is only cleared by a read that would block, which `Transport::read`
        // does only once rustls is empty, so it would be signalled anyway;
        // looking once more after yielding does not depend on that.
        self.unread = self.stream.is_tls();
        Step::Open
    }

    fn feed_partial(&mut self, on: &mut impl FnMut(Incoming<'_>)) -> Option<Step> {
        let mut buf = std::mem::take(&mut self.partial);
        let (used, step) = self.codec.feed(&mut buf, on);
        if step.is_none() && used < buf.len() {
            buf.drain(..used);
            self.partial = buf;
        }
        step
    }

    /// A writer the fan-out may use while this connection's task is not
    /// writing (see [`crate::core::connection::Connection::set_direct`]).
    pub fn direct_writer(&self) -> Arc<dyn DirectWrite> {
        Arc::new(DirectWriter(self.stream.clone()))
    }

    /// Whether framed bytes wait to be written.
    pub fn wants_flush(&self) -> bool {
        !self.codec.out.is_empty() || self.stream.pending()
    }

    /// Frames each payload as a text message and writes the whole batch
    /// with as few `write` calls as the socket allows (one, normally). What
    /// the socket does not take now is kept for [`LeanSocket::flush`].
    pub fn send_text<I>(&mut self, payloads: I) -> io::Result<()>
    where
        I: IntoIterator<Item = Bytes>,
    {
        self.send(None, payloads)
    }

    /// [`LeanSocket::send_text`] after `raw`, bytes that are already framed
    /// (what a direct write left unwritten).
    pub fn send<I>(&mut self, raw: Option<&[u8]>, payloads: I) -> io::Result<()>
    where
        I: IntoIterator<Item = Bytes>,
    {
        if !self.codec.out.is_empty() {
            if let Some(raw) = raw {
                // Control frames (pongs) may not go in the middle of a frame.
                let pending = std::mem::take(&mut self.codec.out);
                self.codec.out.extend_from_slice(raw);
                self.codec.out.extend_from_slice(&pending);
            }
            for payload in payloads {
                push_frame(&mut self.codec.out, OP_TEXT, &payload);
            }
            return Ok(());
        }
        SCRATCH.with_borrow_mut(|buf| {
            buf.clear();
            buf.extend_from_slice(raw.unwrap_or_default());
            for payload in payloads {
                buf.reserve(header_len(payload.len()) + payload.len());
                push_frame(buf, OP_TEXT, &payload);
            }
            let written = self.stream.write_now(buf);
            if let Ok(n) = written
                && n < buf.len()
            {
                self.codec.out.extend_from_slice(&buf[n..]);
            }
            if buf.capacity() > SCRATCH_KEEP {
                *buf = Vec::new();
            }
            written.map(|_| ())
        })
    }

    /// Queues a frame with any opcode (e.g. a binary echo).
    pub fn queue_frame(&mut self, binary: bool, payload: &[u8]) {
        push_frame(
            &mut self.codec.out,
            if binary { OP_BINARY } else { OP_TEXT },
            payload,
        );
    }

    /// Writes everything queued, waiting for the socket as needed. The
    /// write buffer is freed afterwards.
    pub async fn flush(&mut self) -> io::Result<()> {
        loop {
            if self.codec.out.is_empty() {
                self.stream.push_pending()?;
            } else {
                let n = self.stream.write_now(&self.codec.out)?;
                self.codec.out.drain(..n);
            }
            // Ciphertext rustls still holds counts as unwritten.
            if self.codec.out.is_empty() && !self.stream.pending() {
                break;
            }
            self.stream.writable().await?;
        }
        self.codec.out = Vec::new();
        Ok(())
    }

    /// [`LeanSocket::flush`], giving up after `timeout` (a peer that does
    /// not read).
    pub async fn flush_within(&mut self, timeout: Duration) -> Result<(), ()> {
        match tokio::time::timeout(timeout, self.flush()).await {
            Ok(Ok(())) => Ok(()),
            _ => Err(()),
        }
    }

    /// Sends a close frame with `code` and `reason` (unless one was sent)
    /// and waits, at most `timeout`, for the client's answer.
    pub async fn close(&mut self, code: u16, reason: &str, timeout: Duration) {
        self.codec.queue_close(code, reason);
        self.finish(timeout).await;
    }

    /// Ends the connection after [`Step::Closed`] or [`Step::Failed`] (or
    /// [`LeanSocket::close`]): writes what is queued (the close frame) and,
    /// if the client has not closed yet, waits at most `timeout` for it.
    pub async fn finish(&mut self, timeout: Duration) {
        self.codec.queue_owed_close();
        let _ = tokio::time::timeout(timeout, async {
            if self.flush().await.is_err() {
                return;
            }
            while !self.codec.done && !self.eof {
                if self.readable().await.is_err() {
                    return;
                }
                if self.read_available(|_| {}) != Step::Open {
                    break;
                }
            }
            // TLS: close_notify after the close frame (RFC 8446 §6.1).
            self.stream.close_notify();
            let _ = self.flush().await;
        })
        .await;
    }
}

#[cfg(test)]
mod tests;
