//! One pusher-js HTTP session (`xhr_streaming` or `xhr_polling`) as a
//! transport for the Pusher [`Session`]: the same protocol state as a
//! WebSocket connection, fed by `xhr_send` requests and answering into
//! whatever receive request is open.
//!
//! The task waits on its operations (receive requests and sends, from this
//! node or forwarded by another), its outbox, the open receive request
//! going away, auth answers and one timer. Frames that arrive while no
//! receive request is open wait in a backlog bounded like a WebSocket
//! outbox (over it: closed as a slow consumer). A streaming receive gets
//! one chunk per outbox drain and a heartbeat (`h`) when quiet; a polling
//! receive is answered with what is there (or a heartbeat after a while)
//! and ends. A session with no receive request for the app's activity
//! timeout has lost its client: it is closed and its presence members
//! leave.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;
use tokio_util::sync::CancellationToken;

use super::wire;
use crate::config::ServerConfig;
use crate::core::connection::{CloseRequest, Connection, SLOW_CONSUMER};
use crate::core::hub::Hub;
use crate::core::node::Node;
use crate::pusher::protocol::{self as pusher_wire, PUSHER_WIRE};
use crate::pusher::session::{PONG_MISSED, RECONNECT, Session};

/// A request for a session, from the HTTP handler of this node or
/// forwarded from another node.
pub(crate) enum Op {
    /// A receive request: chunks of its response go to `tx` (the response
    /// ends when `tx` is dropped); a polling receive ends after one answer.
    Receive {
        streaming: bool,
        tx: mpsc::Sender<Bytes>,
    },
    /// Client messages from `xhr_send` (`[]` is a heartbeat).
    Send(Vec<String>),
}

/// Chunks a receive response may hold unwritten (the client reads too
/// slowly beyond that: closed as a slow consumer).
pub(crate) const RESPONSE_CHUNKS: usize = 16;
/// A quiet receive request gets a heartbeat this often (streaming), or is
/// answered with one (polling), so that proxies do not time it out.
const HEARTBEAT_EVERY: Duration = Duration::from_secs(25);
/// How long a closed session waits for a receive request to tell the
/// client why.
const CLOSE_LINGER: Duration = Duration::from_secs(5);

/// Code and reason when the client stopped asking for frames.
const EXPIRED: CloseRequest = CloseRequest {
    code: PONG_MISSED,
    reason: "session expired: no receive request within the activity timeout",
};

struct Receiver {
    tx: mpsc::Sender<Bytes>,
    streaming: bool,
    /// When it last got a chunk (or was opened).
    last_write: Instant,
}

/// The HTTP side of the session: the open receive request and the frames
/// waiting for one.
struct Transport {
    receiver: Option<Receiver>,
    backlog: Vec<Bytes>,
    limit: usize,
    opened: bool,
    /// Since when no receive request is open.
    unattached_since: Instant,
}

/// Why writing to the receive request failed.
struct Overflow;

impl Transport {
    fn attach(&mut self, streaming: bool, tx: mpsc::Sender<Bytes>) -> Result<(), Overflow> {
        // A newer receive replaces the old one (whose response then ends).
        self.receiver = Some(Receiver {
            tx,
            streaming,
            last_write: Instant::now(),
        });
        let mut out = BytesMut::new();
        if !self.opened {
            self.opened = true;
            out.extend_from_slice(wire::OPEN);
        }
        self.flush(out)
    }

    fn detach(&mut self) {
        self.receiver = None;
        self.unattached_since = Instant::now();
    }

    /// Writes `out` and the backlog to the open receive request, if any.
    fn flush(&mut self, mut out: BytesMut) -> Result<(), Overflow> {
        if self.backlog.len() > self.limit {
            return Err(Overflow);
        }
        let Some(receiver) = &mut self.receiver else {
            return Ok(());
        };
        if !self.backlog.is_empty() {
            wire::push_array(&mut out, self.backlog.iter().map(|b| &b[..]));
        }
        if out.is_empty() {
            return Ok(());
        }
        match receiver.tx.try_send(out.freeze()) {
            Ok(()) => {
                self.backlog = Vec::new();
                receiver.last_write = Instant::now();
                if !receiver.streaming {
                    self.detach(); // a poll is answered once
                }
                Ok(())
            }
            Err(TrySendError::Full(_)) => Err(Overflow),
            // The client went away: the frames wait for its next request.
            Err(TrySendError::Closed(_)) => {
                self.detach();
                Ok(())
            }
        }
    }

    /// Resolves when the open receive request's client has gone.
    async fn receiver_gone(&self) {
        match &self.receiver {
            Some(r) => r.tx.closed().await,
            None => std::future::pending().await,
        }
    }
}

/// Runs a session to completion. `ops` already holds its first receive
/// request. The caller holds the connection slot until this returns.
pub(crate) async fn run(
    mut ops: mpsc::Receiver<Op>,
    node: Arc<Node>,
    hub: Arc<Hub>,
    config: Arc<ServerConfig>,
    shutdown: CancellationToken,
    cookie: Option<Arc<str>>,
) {
    let conn = Connection::new(&PUSHER_WIRE, config.outbox_limit);
    // Closed with 4001/4003 if the app is deleted or disabled meanwhile.
    let _tracked = hub.track(&conn);
    let activity = Duration::from_secs(hub.app.activity_timeout);
    let pong_timeout = Duration::from_secs(config.pong_timeout);
    hub.connection_opened(&conn);
    conn.send(pusher_wire::connection_established(
        conn.socket_id.as_str(),
        hub.app.activity_timeout,
    ));
    let mut session = Session::new(node, hub.clone(), conn.clone(), cookie);
    let mut t = Transport {
        receiver: None,
        backlog: Vec::new(),
        limit: config.outbox_limit,
        opened: false,
        unattached_since: Instant::now(),
    };
    let mut last_seen = Instant::now();
    let mut ping_sent: Option<Instant> = None;

    let close = loop {
        let mut deadline = match ping_sent {
            Some(at) => at + pong_timeout,
            None => last_seen + activity,
        };
        deadline = deadline.min(match &t.receiver {
            Some(r) => r.last_write + HEARTBEAT_EVERY,
            None => t.unattached_since + activity,
        });
        tokio::select! {
            biased;
            () = shutdown.cancelled() => {
                t.backlog.push(pusher_wire::error(Some(RECONNECT), "server is shutting down; reconnect"));
                break CloseRequest { code: RECONNECT, reason: "server shutting down" };
            }
            () = conn.ready() => {
                let drained = conn.drain();
                t.backlog.extend(drained.raw);
                t.backlog.extend(drained.frames.into_iter().map(|f| f.data));
                conn.release();
                if let Some(close) = drained.close {
                    break close;
                }
                if t.flush(BytesMut::new()).is_err() {
                    break SLOW_CONSUMER;
                }
            }
            op = ops.recv() => match op {
                Some(Op::Send(messages)) => {
                    last_seen = Instant::now();
                    ping_sent = None;
                    for message in &messages {
                        session.handle_text(message);
                    }
                }
                Some(Op::Receive { streaming, tx }) => {
                    // A new receive request is a sign of life too (a
                    // polling client's only one while it has nothing to say).
                    last_seen = Instant::now();
                    ping_sent = None;
                    if t.attach(streaming, tx).is_err() {
                        break SLOW_CONSUMER;
                    }
                }
                None => break EXPIRED,
            },
            () = t.receiver_gone() => t.detach(),
            (data, verdict) = session.next_auth() => session.auth_answered(data, verdict),
            () = tokio::time::sleep_until(deadline.into()) => {
                let now = Instant::now();
                match &t.receiver {
                    None if now >= t.unattached_since + activity => break EXPIRED,
                    Some(r) if now >= r.last_write + HEARTBEAT_EVERY => {
                        let mut out = BytesMut::new();
                        out.extend_from_slice(wire::HEARTBEAT);
                        if t.flush(out).is_err() {
                            break SLOW_CONSUMER;
                        }
                    }
                    _ => {}
                }
                match ping_sent {
                    Some(at) if now >= at + pong_timeout => conn.close_with(
                        Some(pusher_wire::error(Some(PONG_MISSED), "no pong received in time")),
                        CloseRequest { code: PONG_MISSED, reason: "pong reply not received" },
                    ),
                    None if now >= last_seen + activity => {
                        conn.send(pusher_wire::ping());
                        ping_sent = Some(now);
                    }
                    _ => {}
                }
            }
        }
    };
    hub.stats.error(match close.code {
        4100 => "slow_consumer",
        PONG_MISSED if close == EXPIRED => "session_expired",
        PONG_MISSED => "pong_missed",
        RECONNECT => "shutdown",
        _ => "closed_by_server",
    });
    // Members leave now, not after the farewell.
    session.cleanup();
    farewell(&mut ops, t, close).await;
}

/// Tells the client why the session closed: to the open receive request,
/// or to the next one within [`CLOSE_LINGER`].
async fn farewell(ops: &mut mpsc::Receiver<Op>, mut t: Transport, close: CloseRequest) {
    if close == EXPIRED && t.backlog.is_empty() {
        return; // nobody is listening
    }
    let linger = if close.code == RECONNECT {
        Duration::ZERO // shutting down: only a receive already open hears it
    } else {
        CLOSE_LINGER
    };
    if close == SLOW_CONSUMER {
        t.backlog = Vec::new();
    }
    let mut out = BytesMut::new();
    if !t.backlog.is_empty() {
        wire::push_array(&mut out, t.backlog.iter().map(|b| &b[..]));
    }
    wire::push_close(&mut out, close.code, close.reason);
    let out = out.freeze();
    let deadline = tokio::time::Instant::now() + linger;
    let mut receiver = t.receiver.take().map(|r| r.tx);
    loop {
        if let Some(tx) = receiver.take() {
            // A full response channel is a slow reader: it gets no farewell.
            if tx.try_send(out.clone()).is_ok() {
                return;
            }
        }
        match tokio::time::timeout_at(deadline, ops.recv()).await {
            Ok(Some(Op::Receive { tx, .. })) => receiver = Some(tx),
            Ok(Some(Op::Send(_))) => {}
            Ok(None) | Err(_) => return,
        }
    }
}
