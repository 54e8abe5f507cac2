//! The byte transport under [`super::LeanSocket`]: a plain TCP stream, or a
//! TCP stream plus the rustls session that tokio-rustls negotiated (`wss://`
//! on the built-in TLS).
//!
//! Why not keep tokio-rustls' `TlsStream` (or hyper's `Upgraded`)? The lean
//! socket reads into a stack scratch buffer and lets the fan-out write to the
//! socket from other threads while the session task sleeps ([`DirectWrite`]);
//! both need the socket behind a shared reference. So the TLS state sits next
//! to the stream behind a short mutex, and encryption happens in place:
//!
//! - reads pull ciphertext straight from the socket into rustls
//!   (`read_tls` + `process_new_packets`) and drain the plaintext into the
//!   caller's scratch buffer;
//! - writes hand the framed batch to rustls (which encrypts it into its
//!   send buffer) and push ciphertext to the socket until it would block;
//!   what the socket did not take stays in rustls, in order, until
//!   [`Transport::pending`] says it is gone;
//! - a direct write from the fan-out only takes the lock with `try_lock`,
//!   and never writes while ciphertext is pending, so frames never
//!   interleave or reorder.
//!
//! A plain connection pays one pointer (the `None`) and a branch.

use std::io::{self, IoSlice, Read, Write};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::net::TcpStream;
use tokio_rustls::rustls::ServerConnection;

use super::lean::header;
use crate::core::connection::{Direct, DirectWrite};

/// Frames up to this size are copied behind their header on the stack and
/// written with one call; larger ones go out vectored.
const DIRECT_COPY_MAX: usize = 1024;

/// The socket of a lean connection, shared with the fan-out's direct writer.
pub(crate) struct Transport {
    tcp: TcpStream,
    /// The TLS session (`wss://`). Boxed: plain connections pay a pointer.
    tls: Option<Box<Mutex<ServerConnection>>>,
}

/// `io::Read` / `io::Write` over a shared `TcpStream` that never waits
/// (rustls pulls and pushes ciphertext through these).
struct NoWait<'a>(&'a TcpStream);

impl Read for NoWait<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.try_read(buf)
    }
}

impl Write for NoWait<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.try_write(buf)
    }
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.0.try_write_vectored(bufs)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Pushes the ciphertext rustls holds to the socket until it would block.
fn push_tls(tcp: &TcpStream, tls: &mut ServerConnection) -> io::Result<()> {
    while tls.wants_write() {
        match tls.write_tls(&mut NoWait(tcp)) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

impl Transport {
    pub(crate) fn plain(tcp: TcpStream) -> Arc<Self> {
        Arc::new(Transport { tcp, tls: None })
    }

    pub(crate) fn tls(tcp: TcpStream, mut tls: ServerConnection) -> Arc<Self> {
        // Our own bounds apply (the outbox limit, the write timeout); rustls'
        // default 64 KiB send limit would make it refuse part of a batch.
        tls.set_buffer_limit(None);
        Arc::new(Transport {
            tcp,
            tls: Some(Box::new(Mutex::new(tls))),
        })
    }

    pub(crate) fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    pub(crate) fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.tcp.poll_read_ready(cx)
    }

    pub(crate) async fn writable(&self) -> io::Result<()> {
        self.tcp.writable().await
    }

    /// Reads plaintext without waiting: `Ok(0)` is the end of the stream
    /// (TCP EOF, or the client's close_notify), `WouldBlock` means nothing
    /// more for now.
    pub(crate) fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(tls) = &self.tls else {
            return self.tcp.try_read(buf);
        };
        let mut tls = tls.lock();
        loop {
            match tls.reader().read(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // The peer closed TCP without close_notify: an end all the same.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                Err(e) => return Err(e),
            }
            match tls.read_tls(&mut NoWait(&self.tcp)) {
                Ok(0) => return Ok(0),
                Ok(_) => {}
                Err(e) => return Err(e),
            }
            if let Err(e) = tls.process_new_packets() {
                // rustls queued an alert saying why: send it, best effort.
                let _ = push_tls(&self.tcp, &mut tls);
                return Err(io::Error::new(io::ErrorKind::InvalidData, e));
            }
            // Key updates and the like answer at once.
            push_tls(&self.tcp, &mut tls)?;
        }
    }

    /// Writes as much of `buf` as possible without waiting and returns how
    /// much was taken. Over TLS everything is taken (encrypted into rustls'
    /// buffer); what the socket did not accept is [`Transport::pending`].
    pub(crate) fn write_now(&self, buf: &[u8]) -> io::Result<usize> {
        let Some(tls) = &self.tls else {
            return write_plain(&self.tcp, buf);
        };
        let mut tls = tls.lock();
        tls.writer().write_all(buf)?;
        push_tls(&self.tcp, &mut tls)?;
        Ok(buf.len())
    }

    /// Pushes pending ciphertext (no-op on plain TCP).
    pub(crate) fn push_pending(&self) -> io::Result<()> {
        match &self.tls {
            Some(tls) => push_tls(&self.tcp, &mut tls.lock()),
            None => Ok(()),
        }
    }

    /// Ciphertext is waiting for the socket to take it.
    pub(crate) fn pending(&self) -> bool {
        self.tls.as_ref().is_some_and(|t| t.lock().wants_write())
    }

    /// Queues TLS close_notify (no-op on plain TCP); flush afterwards.
    pub(crate) fn close_notify(&self) {
        if let Some(tls) = &self.tls {
            tls.lock().send_close_notify();
        }
    }
}

/// Writes as much of `buf` as the socket takes without waiting.
fn write_plain(stream: &TcpStream, buf: &[u8]) -> io::Result<usize> {
    let mut written = 0;
    while written < buf.len() {
        match stream.try_write(&buf[written..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => written += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(written)
}

/// Writes text frames to the socket from the fan-out (see
/// [`DirectWrite`]).
pub(crate) struct DirectWriter(pub(crate) Arc<Transport>);

impl DirectWrite for DirectWriter {
    fn try_write(&self, payload: &Bytes) -> Direct {
        let (header, hlen) = header(super::lean::OP_TEXT, payload.len());
        let total = hlen + payload.len();
        let mut small = [0u8; DIRECT_COPY_MAX];
        let parts = if total <= DIRECT_COPY_MAX {
            small[..hlen].copy_from_slice(&header[..hlen]);
            small[hlen..total].copy_from_slice(payload);
            [IoSlice::new(&small[..total]), IoSlice::new(&[])]
        } else {
            [IoSlice::new(&header[..hlen]), IoSlice::new(payload)]
        };
        let parts = if total <= DIRECT_COPY_MAX {
            &parts[..1]
        } else {
            &parts[..]
        };
        let Some(tls) = &self.0.tls else {
            let written = match parts {
                [one] => self.0.tcp.try_write(one),
                _ => self.0.tcp.try_write_vectored(parts),
            };
            return match written {
                Ok(n) if n >= total => Direct::Written,
                Ok(n) if n > 0 => Direct::Partial(rest(&header[..hlen], payload, n)),
                // Full, or an error the session will meet on its own.
                _ => Direct::NotNow,
            };
        };
        // The session is reading or writing, or ciphertext waits: queue, so
        // that frames stay in order.
        let Some(mut tls) = tls.try_lock() else {
            return Direct::NotNow;
        };
        if tls.wants_write() {
            return Direct::NotNow;
        }
        // One record for header and payload (rustls joins the slices).
        let taken = match tls.writer().write_vectored(parts) {
            Ok(n) => n,
            Err(_) => return Direct::NotNow,
        };
        if taken < total {
            // Not with an unlimited buffer; kept correct anyway.
            return Direct::Partial(rest(&header[..hlen], payload, taken));
        }
        match push_tls(&self.0.tcp, &mut tls) {
            Ok(()) if !tls.wants_write() => Direct::Written,
            // The frame is encrypted and must not be queued again: an empty
            // remainder wakes the session to flush (or meet the error).
            _ => Direct::Partial(Bytes::new()),
        }
    }
}

/// The framed bytes after the first `n` of header + payload.
fn rest(header: &[u8], payload: &Bytes, n: usize) -> Bytes {
    if n < header.len() {
        let mut rest = Vec::with_capacity(header.len() + payload.len() - n);
        rest.extend_from_slice(&header[n..]);
        rest.extend_from_slice(payload);
        rest.into()
    } else {
        payload.slice(n - header.len()..)
    }
}
