//! A raw connection as handler code sees it: [`Message`] (what travels) and
//! [`Conn`] (a cheap, cloneable handle to one connection: who it is, what it
//! asked for, and how to talk to it).
//!
//! Everything a handler sends is queued on the core [`Connection`]'s
//! outbox, the same bounded queue the fan-out writes to, so a connection's
//! frames leave in one order from one writer, and a handler that floods a
//! client that does not read gets it closed as a slow consumer (4100)
//! instead of growing memory.

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use hyper::HeaderMap;
use parking_lot::Mutex;

use super::auth::UpgradeRequest;
use super::rooms::{RoomAuthorizer, RoomError, Rooms, joinable};
use super::route::Params;
use crate::core::channel::{ChannelSpec, SERVER_TO_USER_PREFIX};
use crate::core::connection::{CloseRequest, Connection, Frame, SocketId};
use crate::core::hub::Hub;

/// One WebSocket message: text (valid UTF-8) or binary.
#[derive(Clone, PartialEq, Eq)]
pub struct Message {
    data: Bytes,
    binary: bool,
}

impl Message {
    pub fn text(text: impl Into<String>) -> Self {
        Message {
            data: Bytes::from(text.into()),
            binary: false,
        }
    }

    pub fn binary(data: impl Into<Bytes>) -> Self {
        Message {
            data: data.into(),
            binary: true,
        }
    }

    /// Text received from the WebSocket layer (already validated as UTF-8).
    pub(crate) fn from_wire(data: Bytes, binary: bool) -> Self {
        Message { data, binary }
    }

    pub fn is_binary(&self) -> bool {
        self.binary
    }

    pub fn is_text(&self) -> bool {
        !self.binary
    }

    /// The text of a text message (`None` for binary).
    pub fn as_text(&self) -> Option<&str> {
        if self.binary {
            return None;
        }
        std::str::from_utf8(&self.data).ok()
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.data
    }

    pub fn into_bytes(self) -> Bytes {
        self.data
    }

    pub fn len(&self) -> usize {
        self.data.len()
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    pub(crate) fn into_frame(self) -> Frame {
        Frame {
            data: self.data,
            binary: self.binary,
        }
    }
}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.as_text() {
            Some(text) => write!(f, "Text({text:?})"),
            None => write!(f, "Binary({} bytes)", self.data.len()),
        }
    }
}

impl From<&str> for Message {
    fn from(s: &str) -> Self {
        Message::text(s)
    }
}

impl From<String> for Message {
    fn from(s: String) -> Self {
        Message::text(s)
    }
}

impl From<Vec<u8>> for Message {
    fn from(v: Vec<u8>) -> Self {
        Message::binary(v)
    }
}

impl From<Bytes> for Message {
    fn from(b: Bytes) -> Self {
        Message::binary(b)
    }
}

/// How a connection ended: the close code and reason that were exchanged
/// (1005 when the peer's close frame had no code, 1006 when the TCP
/// connection ended without a close frame).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseStatus {
    pub code: u16,
    pub reason: String,
}

/// Longest close reason a close frame can carry (125 bytes minus the code).
const MAX_REASON: usize = 123;

struct Joined {
    rooms: Vec<Box<str>>,
    /// Set once the connection is over: later joins are refused, so a
    /// handle kept past the end cannot leave a dead subscriber behind.
    closed: bool,
}

pub(crate) struct ConnInner {
    pub(crate) core: Arc<Connection>,
    pub(crate) hub: Arc<Hub>,
    rooms: Rooms,
    /// The route's authoriser for private rooms, if it has one.
    authorize: Option<RoomAuthorizer>,
    user: Option<Box<str>>,
    request: UpgradeRequest,
    protocol: Option<Box<str>>,
    joined: Mutex<Joined>,
    close_reason: Mutex<Option<String>>,
    status: Mutex<Option<CloseStatus>>,
}

/// A handle to one raw connection; clones are cheap and refer to the same
/// connection. Valid after the connection ended (sends are then ignored).
#[derive(Clone)]
pub struct Conn(pub(crate) Arc<ConnInner>);

impl fmt::Debug for Conn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Conn")
            .field("id", &self.0.core.socket_id)
            .field("user", &self.0.user)
            .finish()
    }
}

impl Conn {
    pub(crate) fn new(
        core: Arc<Connection>,
        rooms: Rooms,
        authorize: Option<RoomAuthorizer>,
        user: Option<String>,
        request: UpgradeRequest,
        protocol: Option<String>,
    ) -> Self {
        Conn(Arc::new(ConnInner {
            hub: rooms.hub().clone(),
            core,
            rooms,
            authorize,
            user: user.map(Into::into),
            request,
            protocol: protocol.map(Into::into),
            joined: Mutex::new(Joined {
                rooms: Vec::new(),
                closed: false,
            }),
            close_reason: Mutex::new(None),
            status: Mutex::new(None),
        }))
    }

    /// The connection's id (`\d+\.\d+`, unique across nodes).
    pub fn id(&self) -> &SocketId {
        &self.0.core.socket_id
    }

    /// The user the authenticator identified, if any.
    pub fn user(&self) -> Option<&str> {
        self.0.user.as_deref()
    }

    /// A parameter captured from the route's path pattern.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.0.request.params.get(name)
    }

    pub fn params(&self) -> &Params {
        &self.0.request.params
    }

    /// The upgrade request's path, query and headers.
    pub fn request(&self) -> &UpgradeRequest {
        &self.0.request
    }

    pub fn headers(&self) -> &HeaderMap {
        &self.0.request.headers
    }

    /// The negotiated subprotocol, if any.
    pub fn protocol(&self) -> Option<&str> {
        self.0.protocol.as_deref()
    }

    /// Rooms, users and every connection of this route's app.
    pub fn rooms(&self) -> &Rooms {
        &self.0.rooms
    }

    /// Queues a message to this connection. Never waits; returns false when
    /// the connection is closing or was closed as a slow consumer.
    pub fn send(&self, message: impl Into<Message>) -> bool {
        self.0.core.send(message.into().into_frame())
    }

    /// Closes the connection after what is already queued: a close frame
    /// with `code` (1000, or 3000–4999 for the application's own) and
    /// `reason` (cut to 123 bytes), then the close handshake.
    pub fn close(&self, code: u16, reason: &str) {
        let mut end = reason.len().min(MAX_REASON);
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        *self.0.close_reason.lock() = Some(reason[..end].to_string());
        self.0
            .core
            .close_with(None, CloseRequest { code, reason: "" });
    }

    /// Joins `room`: any valid public channel name; `private-*` and
    /// `private-encrypted-*` only when the route's
    /// [`authorize_rooms`](super::Route::authorize_rooms) allows it for
    /// this connection's user ([`RoomError::Unauthorized`] otherwise);
    /// never `presence-*` or `#`-prefixed names ([`RoomError::Reserved`]).
    /// A handler joining a room a client asked for can close with
    /// [`super::ROOM_REFUSED`] (4009) and the error as reason.
    /// Broadcasts to the room, and HTTP API triggers on a channel of that
    /// name, reach this connection until it leaves.
    pub fn join(&self, room: &str) -> Result<(), RoomError> {
        self.join_spec(&joinable(room, self.user(), self.0.authorize.as_ref())?)
    }

    /// Joins any valid channel (internal: the user's own channel).
    pub(crate) fn join_spec(&self, spec: &ChannelSpec<'_>) -> Result<(), RoomError> {
        let mut joined = self.0.joined.lock();
        if joined.closed {
            return Err(RoomError::Closed);
        }
        if joined.rooms.iter().any(|r| &**r == spec.name) {
            return Ok(());
        }
        // Non-presence subscriptions cannot be refused by the hub.
        let _ = self.0.hub.subscribe(&self.0.core, spec, None, |_| {});
        joined.rooms.push(spec.name.into());
        Ok(())
    }

    /// Leaves `room`; false if the connection was not in it.
    pub fn leave(&self, room: &str) -> bool {
        let mut joined = self.0.joined.lock();
        let Some(pos) = joined.rooms.iter().position(|r| &**r == room) else {
            return false;
        };
        joined.rooms.swap_remove(pos);
        self.0.hub.unsubscribe(&self.0.core, room, None)
    }

    /// The rooms this connection is in.
    pub fn joined_rooms(&self) -> Vec<String> {
        self.0
            .joined
            .lock()
            .rooms
            .iter()
            .filter(|r| !r.starts_with(SERVER_TO_USER_PREFIX))
            .map(|r| r.to_string())
            .collect()
    }

    /// Sends `message` to everyone in `room` but this connection.
    pub fn broadcast(&self, room: &str, message: impl Into<Message>) -> Result<(), RoomError> {
        self.0
            .rooms
            .broadcast(room, message, std::slice::from_ref(self.id()))
    }

    /// How the connection ended (`None` while it is open).
    pub fn close_status(&self) -> Option<CloseStatus> {
        self.0.status.lock().clone()
    }

    pub(crate) fn take_close_reason(&self) -> Option<String> {
        self.0.close_reason.lock().take()
    }

    /// Marks the connection over and leaves every room.
    pub(crate) fn finish(&self, status: CloseStatus) {
        *self.0.status.lock() = Some(status);
        let rooms = {
            let mut joined = self.0.joined.lock();
            joined.closed = true;
            std::mem::take(&mut joined.rooms)
        };
        for room in rooms {
            self.0.hub.unsubscribe(&self.0.core, &room, None);
        }
    }
}
