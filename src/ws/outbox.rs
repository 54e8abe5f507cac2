//! Writing a lean connection's outbox: shared by the Pusher session and
//! the Socket.IO WebSocket loop, which run on the same [`LeanSocket`].

use std::time::Duration;

use super::lean::LeanSocket;
use crate::core::connection::{CloseRequest, Connection};

/// How writing the outbox ended.
pub enum Written {
    /// All written; fan-outs may write directly again.
    Done,
    /// The socket failed or did not take the frames in time.
    Failed,
    /// All written, and the connection is to be closed.
    Close(CloseRequest),
}

/// Writes everything queued for the connection, plus any control frames the
/// socket holds, in one write when the socket takes it, and hands writing
/// back to the fan-out (see [`Connection::release`]).
pub async fn write_outbox(
    socket: &mut LeanSocket,
    conn: &Connection,
    timeout: Duration,
) -> Written {
    loop {
        let drained = conn.drain();
        if socket
            .send(
                drained.raw.as_deref(),
                drained.frames.into_iter().map(|f| f.data),
            )
            .is_err()
        {
            return Written::Failed;
        }
        // Rare (a full socket): keep the timer out of the idle task's size.
        if socket.wants_flush() && Box::pin(socket.flush_within(timeout)).await.is_err() {
            return Written::Failed;
        }
        if let Some(close) = drained.close {
            return Written::Close(close);
        }
        if conn.release() {
            return Written::Done;
        }
    }
}
