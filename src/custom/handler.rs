//! The two ways to write a route's logic, and the task that runs a
//! connection under either.
//!
//! - [`Callbacks`]: implement `on_open` / `on_message` / `on_close` /
//!   `on_error` (as `async fn`s) on a shared value; good for handlers that
//!   react to each message on its own.
//! - A task per connection ([`super::Route::task`]): an `async` closure that
//!   owns a [`WebSocket`] and calls `recv().await`; good for protocols with
//!   state and steps (handshakes, timeouts between messages).
//!
//! Callbacks are a task too (a loop over `recv` that calls the methods), so
//! both styles run the same way: two tasks per connection. The *driver*
//! owns the socket and does all I/O: it reads frames into a small bounded
//! inbox, writes the outbox (handler sends and room fan-out alike), and
//! handles close and shutdown. The *handler task* runs the application's
//! code. Keeping them apart means a handler busy in a database call never
//! stalls broadcasts to its client, and a handler that panics is a failed
//! `JoinHandle` for the driver — it closes that one connection with 1011
//! and the server goes on.

use std::future::Future;
use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::conn::{CloseStatus, Conn, Message};
use crate::ws::{self, Socket, WsError};

/// How long a close handshake or a stuck write may take.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);
/// Room in the inbox. The driver reads the next frame only when the handler
/// has finished with the previous message (see `drive`), so at most one
/// message and one error notice are ever in it.
const INBOX: usize = 2;
/// How long a handler may run on after its connection ended (for
/// `on_close` work) before it is aborted.
const HANDLER_GRACE: Duration = Duration::from_secs(10);

/// Close codes the driver sends.
pub const NORMAL: u16 = 1000;
pub const GOING_AWAY: u16 = 1001;
pub const INTERNAL_ERROR: u16 = 1011;
/// A client that floods pings without reading the pongs.
pub const POLICY_VIOLATION: u16 = 1008;
/// Pings answered between two flushes of the pongs.
const PINGS_PER_FLUSH: u32 = 64;
/// No close frame was exchanged (the TCP connection just ended).
pub const ABNORMAL: u16 = 1006;
/// The peer's close frame carried no code.
pub const NO_STATUS: u16 = 1005;

/// A protocol violation by the client (bad UTF-8, a reserved bit, an
/// unmasked frame, a message over the limit, ...): the server has answered
/// with a close frame carrying `close_code`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtocolError {
    pub close_code: u16,
    pub message: String,
}

/// A route's logic as callbacks on a value shared by all its connections.
/// Implement the methods as `async fn`; all but `on_message` default to
/// doing nothing.
pub trait Callbacks: Send + Sync + 'static {
    /// The connection is open (and in its default room, if any).
    fn on_open(&self, conn: &Conn) -> impl Future<Output = ()> + Send {
        let _ = conn;
        async {}
    }

    /// A complete message (fragments already joined).
    fn on_message(&self, conn: &Conn, message: Message) -> impl Future<Output = ()> + Send;

    /// The connection ended with this close code and reason; its rooms are
    /// already left. Called once, last.
    fn on_close(&self, conn: &Conn, code: u16, reason: &str) -> impl Future<Output = ()> + Send {
        let _ = (conn, code, reason);
        async {}
    }

    /// The client broke the protocol; `on_close` follows.
    fn on_error(&self, conn: &Conn, error: &ProtocolError) -> impl Future<Output = ()> + Send {
        let _ = (conn, error);
        async {}
    }
}

/// What the driver hands the handler task.
enum Inbound {
    Message(Message),
    Error(ProtocolError),
}

/// One connection, owned by a task-style handler. Dereferences to its
/// [`Conn`] (`ws.send(..)`, `ws.join(..)`, `ws.user()`...).
pub struct WebSocket {
    conn: Conn,
    inbox: mpsc::Receiver<Inbound>,
    /// Messages taken from the inbox so far, published each time the
    /// handler asks for the next one (it is then done with all of them).
    taken: u64,
    idle: watch::Sender<u64>,
    error: Option<ProtocolError>,
}

/// [`WebSocket::recv_timeout`] gave up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Elapsed;

impl WebSocket {
    /// The next message, or `None` once the connection has ended (see
    /// [`Conn::close_status`] and [`WebSocket::protocol_error`] for why).
    pub async fn recv(&mut self) -> Option<Message> {
        loop {
            match self.next_event().await? {
                Inbound::Message(m) => return Some(m),
                Inbound::Error(e) => self.error = Some(e),
            }
        }
    }

    /// Like [`recv`](Self::recv), giving up after `timeout` (the connection
    /// stays open; call it again or close).
    pub async fn recv_timeout(&mut self, timeout: Duration) -> Result<Option<Message>, Elapsed> {
        tokio::time::timeout(timeout, self.recv())
            .await
            .map_err(|_| Elapsed)
    }

    /// The client's protocol violation that ended the connection, if any.
    pub fn protocol_error(&self) -> Option<&ProtocolError> {
        self.error.as_ref()
    }

    /// The connection handle, to keep or hand to other tasks.
    pub fn conn(&self) -> &Conn {
        &self.conn
    }

    /// Waits for the next event, for the callbacks loop.
    async fn next_event(&mut self) -> Option<Inbound> {
        self.idle.send_replace(self.taken);
        let event = self.inbox.recv().await?;
        if matches!(event, Inbound::Message(_)) {
            self.taken += 1;
        }
        Some(event)
    }
}

impl Deref for WebSocket {
    type Target = Conn;

    fn deref(&self) -> &Conn {
        &self.conn
    }
}

type TaskFn = dyn Fn(WebSocket) -> BoxFuture<'static, ()> + Send + Sync;

/// A route's logic with its style erased: a function that turns a
/// connection into the handler task's future.
#[derive(Clone)]
pub struct Handler(Arc<TaskFn>);

impl Handler {
    pub(crate) fn from_task<F, Fut>(f: F) -> Self
    where
        F: Fn(WebSocket) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        Handler(Arc::new(move |ws| Box::pin(f(ws))))
    }

    pub(crate) fn from_callbacks<C: Callbacks>(callbacks: C) -> Self {
        let callbacks = Arc::new(callbacks);
        Handler(Arc::new(move |ws| {
            Box::pin(run_callbacks(callbacks.clone(), ws))
        }))
    }

    /// Sends every message back as it came (text as text, binary as
    /// binary): the reference for conformance tests.
    pub fn echo() -> Self {
        Handler::from_task(|mut ws: WebSocket| async move {
            while let Some(message) = ws.recv().await {
                ws.send(message);
            }
        })
    }
}

async fn run_callbacks<C: Callbacks>(callbacks: Arc<C>, mut ws: WebSocket) {
    let conn = ws.conn.clone();
    callbacks.on_open(&conn).await;
    while let Some(event) = ws.next_event().await {
        match event {
            Inbound::Message(m) => callbacks.on_message(&conn, m).await,
            Inbound::Error(e) => callbacks.on_error(&conn, &e).await,
        }
    }
    let status = conn.close_status().unwrap_or(CloseStatus {
        code: ABNORMAL,
        reason: String::new(),
    });
    callbacks.on_close(&conn, status.code, &status.reason).await;
}

/// The close code the WebSocket layer answered a protocol error with.
fn close_code_for(error: &WsError) -> u16 {
    match error {
        WsError::PayloadTooLong { .. } => 1009,
        WsError::Protocol(p) => {
            let text = p.to_string().to_ascii_lowercase();
            if text.contains("utf-8") || text.contains("utf8") {
                1007
            } else {
                1002
            }
        }
        _ => ABNORMAL,
    }
}

/// Runs one connection to its end: spawns the handler task and drives the
/// socket. The caller registered `conn` and cleans up after.
pub(crate) async fn drive(
    mut socket: Socket,
    conn: Conn,
    handler: &Handler,
    shutdown: CancellationToken,
    write_timeout: Duration,
) {
    let (tx, rx) = mpsc::channel(INBOX);
    let (idle_tx, mut idle) = watch::channel(0u64);
    let ws = WebSocket {
        conn: conn.clone(),
        inbox: rx,
        taken: 0,
        idle: idle_tx,
        error: None,
    };
    let mut task = tokio::spawn((handler.0)(ws));
    let core = conn.0.core.clone();
    let mut peer_close: Option<CloseStatus> = None;
    let mut inbox_open = true;
    let mut task_done = false;
    // Messages handed to the handler. The socket is read only when the
    // handler has finished with all of them: replies to a message are then
    // queued (and, the outbox branch coming first, written) before the next
    // frame is even read, so a valid message followed by a broken frame is
    // answered before the close, and a slow handler slows its client down
    // through TCP instead of a buffer.
    let mut delivered: u64 = 0;
    let mut pings_unflushed: u32 = 0;

    let status = loop {
        let handler_idle = !inbox_open || *idle.borrow() == delivered;
        tokio::select! {
            biased;
            () = shutdown.cancelled() => {
                let _ = ws::send_batch(&mut socket, core.drain().frames, CLOSE_TIMEOUT).await;
                ws::close(&mut socket, GOING_AWAY, "server shutting down", CLOSE_TIMEOUT).await;
                break CloseStatus { code: GOING_AWAY, reason: "server shutting down".into() };
            }
            joined = &mut task, if !task_done => {
                task_done = true;
                match joined {
                    Ok(()) => {
                        // The handler is done with the connection: send what it
                        // queued, then close (with its own close, if it asked).
                        let drained = core.drain();
                        let _ = ws::send_batch(&mut socket, drained.frames, write_timeout).await;
                        let (code, reason) = match drained.close {
                            Some(close) => (close.code, conn.take_close_reason().unwrap_or_else(|| close.reason.to_string())),
                            None => (NORMAL, String::new()),
                        };
                        ws::close(&mut socket, code, &reason, CLOSE_TIMEOUT).await;
                        break CloseStatus { code, reason };
                    }
                    Err(e) => {
                        tracing::error!(socket_id = %conn.id(), error = %e, "custom route handler failed");
                        conn.0.hub.stats.error("handler_panic");
                        ws::close(&mut socket, INTERNAL_ERROR, "internal error", CLOSE_TIMEOUT).await;
                        break CloseStatus { code: INTERNAL_ERROR, reason: "internal error".into() };
                    }
                }
            }
            () = core.ready() => {
                let drained = core.drain();
                if ws::send_batch(&mut socket, drained.frames, write_timeout).await.is_err() {
                    // After the peer's close frame writes fail by design.
                    break peer_close.take().unwrap_or(CloseStatus { code: ABNORMAL, reason: "write failed".into() });
                }
                if let Some(close) = drained.close {
                    if close.code == crate::core::connection::SLOW_CONSUMER.code {
                        conn.0.hub.stats.error("slow_consumer");
                    }
                    let reason = conn.take_close_reason().unwrap_or_else(|| close.reason.to_string());
                    ws::close(&mut socket, close.code, &reason, CLOSE_TIMEOUT).await;
                    break CloseStatus { code: close.code, reason };
                }
            }
            // The handler is busy with a message: wait until it asks for
            // the next one (or drops its WebSocket).
            changed = idle.changed(), if !handler_idle => {
                if changed.is_err() {
                    inbox_open = false;
                }
            }
            message = socket.next(), if handler_idle => match message {
                None => break peer_close.take().unwrap_or(CloseStatus { code: ABNORMAL, reason: String::new() }),
                Some(Err(e)) => {
                    let code = close_code_for(&e);
                    tracing::debug!(socket_id = %conn.id(), error = %e, "websocket error on a custom route");
                    conn.0.hub.stats.error("websocket_protocol");
                    if code != ABNORMAL && inbox_open {
                        let _ = tx.try_send(Inbound::Error(ProtocolError { close_code: code, message: e.to_string() }));
                    }
                    ws::close_after_error(&mut socket, &e, CLOSE_TIMEOUT).await;
                    break CloseStatus { code, reason: e.to_string() };
                }
                Some(Ok(message)) => {
                    // tokio-websockets parses many frames out of one read
                    // without touching the socket, so a client flooding
                    // small frames (pings) would never hit tokio's
                    // cooperative budget and could starve other
                    // connections on this worker: count each frame.
                    tokio::task::consume_budget().await;
                    if message.is_ping() {
                        // The crate queues a pong per ping, unbounded, until
                        // the socket is flushed: flush every few pings, so a
                        // client that floods pings and never reads stops
                        // being read (TCP backpressure) and, after
                        // `write_timeout`, is closed (1008).
                        pings_unflushed += 1;
                        if pings_unflushed >= PINGS_PER_FLUSH {
                            pings_unflushed = 0;
                            let flushed = tokio::time::timeout(write_timeout, futures_util::SinkExt::flush(&mut socket)).await;
                            if !matches!(flushed, Ok(Ok(()))) {
                                conn.0.hub.stats.error("ping_flood");
                                let reason = "pings sent faster than their pongs are read".to_string();
                                ws::close(&mut socket, POLICY_VIOLATION, &reason, CLOSE_TIMEOUT).await;
                                break CloseStatus { code: POLICY_VIOLATION, reason };
                            }
                        }
                    }
                    if let Some((code, reason)) = message.as_close() {
                        // The crate has queued our answer; the next read
                        // flushes it and ends the stream.
                        peer_close = Some(CloseStatus { code: u16::from(code), reason: reason.to_string() });
                    } else if message.is_close() {
                        peer_close = Some(CloseStatus { code: NO_STATUS, reason: String::new() });
                    } else if message.is_text() || message.is_binary() {
                        conn.0.hub.stats.received(message.as_payload().len());
                        let binary = message.is_binary();
                        let inbound = Inbound::Message(Message::from_wire(message.into_payload().into(), binary));
                        if inbox_open {
                            if tx.try_send(inbound).is_ok() {
                                delivered += 1;
                            } else {
                                inbox_open = false;
                            }
                        }
                    }
                }
            },
        }
    };
    conn.finish(status);
    drop(tx);
    if !task_done {
        match tokio::time::timeout(HANDLER_GRACE, &mut task).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::error!(socket_id = %conn.id(), error = %e, "custom route handler failed after close");
                conn.0.hub.stats.error("handler_panic");
            }
            Err(_) => {
                tracing::warn!(socket_id = %conn.id(), "handler still running after its connection ended; aborted");
                task.abort();
            }
        }
    }
}
