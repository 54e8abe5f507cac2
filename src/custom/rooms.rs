//! Rooms and fan-out for handler code, on top of the core.
//!
//! A room *is* a channel of the app's [`Hub`]: joining subscribes the raw
//! connection, and a broadcast is an [`EventKind::Raw`] event published with
//! [`Node::publish`], so it takes the same path as every other event (the
//! adapter carries it to other nodes; the payload is one shared `Bytes`
//! for all recipients). For the same reason an HTTP API trigger on a
//! channel named like the room reaches its raw connections, as the JSON
//! envelope described in [`super::wire`], and pusher-js clients subscribed
//! to a public channel of that name receive a room's text broadcasts as-is.
//!
//! Who may join which room: public names (`lobby`, `chat-42`) are open to
//! every connection of the route. `private-*` and `private-encrypted-*`
//! are the names the app broadcasts private data on (Laravel's
//! `PrivateChannel`, e.g. `private-App.Models.User.1`), so a raw
//! connection joins one only when its route has an authoriser
//! ([`super::Route::authorize_rooms`]) that says yes for that user and
//! room. `presence-*` (needs a member, signed by the app) and `#`-prefixed
//! internal names such as `#server-to-user-*` (joined automatically, only
//! as that user) are never joinable. The rule holds for every name a
//! client controls: the route's `room_param` (refused with 403 before the
//! upgrade) and [`super::Conn::join`] from handler code (an `Err`).
//!
//! A user's connections share the channel `#server-to-user-{id}` (the one
//! Pusher's `sendToUser` triggers on), so [`Rooms::to_user`] and the HTTP
//! API reach every connection of a user on every node.
//!
//! Sending to one connection by id and to every connection of the app use a
//! registry of this node's raw connections: the core has no per-connection
//! channel (it would cost a channel per connection), so those two reach
//! this node only; a cross-node adapter would forward them here.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use parking_lot::Mutex;

use super::conn::Message;
use crate::core::channel::{ChannelKind, ChannelSpec, SERVER_TO_USER_PREFIX};
use crate::core::connection::{Connection, SocketId};
use crate::core::event::{Event, EventKind, RawJson};
use crate::core::hub::Hub;
use crate::core::node::Node;

/// Why a room operation was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoomError {
    /// Not a valid channel name (A-Z a-z 0-9 and `_ - = @ , . ;`, ≤ 164).
    InvalidName(String),
    /// `presence-*` and `#server-to-user-*` belong to the Pusher protocol.
    Reserved(String),
    /// `private-*` / `private-encrypted-*` without the route's authoriser
    /// allowing it for this user.
    Unauthorized(String),
    /// `data` given to [`Rooms::trigger`] is not JSON.
    InvalidData(String),
    /// The connection has ended.
    Closed,
}

impl fmt::Display for RoomError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RoomError::InvalidName(e) => write!(f, "invalid room name: {e}"),
            RoomError::Reserved(name) => write!(
                f,
                "room {name:?} is reserved (presence-* and #-prefixed names such as #server-to-user-* are Pusher channels)"
            ),
            RoomError::Unauthorized(name) => write!(
                f,
                "room {name:?} is a private channel: this route does not authorise it for this connection"
            ),
            RoomError::InvalidData(e) => write!(f, "event data is not JSON: {e}"),
            RoomError::Closed => write!(f, "the connection has ended"),
        }
    }
}

impl std::error::Error for RoomError {}

/// This node's raw connections of one app, by id.
#[derive(Default)]
pub(crate) struct Registry {
    conns: Mutex<HashMap<SocketId, Arc<Connection>>>,
}

impl Registry {
    pub(crate) fn insert(&self, conn: &Arc<Connection>) {
        self.conns
            .lock()
            .insert(conn.socket_id.clone(), conn.clone());
    }

    pub(crate) fn remove(&self, id: &SocketId) {
        self.conns.lock().remove(id);
    }
}

/// Fan-out for one app: rooms, users, single connections, everyone.
/// Cheap to clone; get one from [`super::Conn::rooms`] or
/// [`crate::server::Server::rooms`].
#[derive(Clone)]
pub struct Rooms {
    node: Arc<Node>,
    hub: Arc<Hub>,
    registry: Arc<Registry>,
}

fn raw(message: Message) -> EventKind {
    let binary = message.is_binary();
    EventKind::Raw {
        payload: message.into_bytes(),
        binary,
    }
}

fn room_name(room: &str) -> Result<ChannelSpec<'_>, RoomError> {
    ChannelSpec::parse(room).map_err(|e| RoomError::InvalidName(e.to_string()))
}

/// Decides whether `user` (the authenticator's, if any) may join a
/// private room; see [`super::Route::authorize_rooms`].
pub type RoomAuthorizer = Arc<dyn Fn(Option<&str>, &str) -> bool + Send + Sync>;

/// A name a connection may join: a valid channel name, not one of the
/// Pusher protocol's own (presence needs a member, a user's channel is
/// joined only as that user), and a private one only when `authorize`
/// allows it for `user`.
pub(crate) fn joinable<'a>(
    room: &'a str,
    user: Option<&str>,
    authorize: Option<&RoomAuthorizer>,
) -> Result<ChannelSpec<'a>, RoomError> {
    if room.starts_with('#') {
        return Err(RoomError::Reserved(room.to_string()));
    }
    let spec = room_name(room)?;
    match spec.kind {
        ChannelKind::Public => Ok(spec),
        ChannelKind::Presence | ChannelKind::ServerToUser => {
            Err(RoomError::Reserved(room.to_string()))
        }
        ChannelKind::Private | ChannelKind::PrivateEncrypted => match authorize {
            Some(f) if f(user, room) => Ok(spec),
            _ => Err(RoomError::Unauthorized(room.to_string())),
        },
    }
}

impl Rooms {
    pub(crate) fn new(node: Arc<Node>, hub: Arc<Hub>, registry: Arc<Registry>) -> Self {
        Rooms {
            node,
            hub,
            registry,
        }
    }

    pub(crate) fn hub(&self) -> &Arc<Hub> {
        &self.hub
    }

    pub(crate) fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// The app these rooms belong to.
    pub fn app_id(&self) -> &str {
        &self.hub.app.id
    }

    /// Sends `message` to every connection in `room` (on every node) except
    /// those in `except`.
    pub fn broadcast(
        &self,
        room: &str,
        message: impl Into<Message>,
        except: &[SocketId],
    ) -> Result<(), RoomError> {
        room_name(room)?;
        let event = Event::new(room, raw(message.into()), None).also_excluding(except.to_vec());
        self.node.publish(&self.hub, event);
        Ok(())
    }

    /// A Pusher-style event on `room`: raw connections get the JSON
    /// envelope `{"event","channel","data"}`, pusher-js subscribers the
    /// usual Pusher frame. `data` must be JSON (a string, as SDKs send it,
    /// or any value).
    pub fn trigger(&self, room: &str, event: &str, data: &str) -> Result<(), RoomError> {
        room_name(room)?;
        let data = RawJson::parse(data).map_err(|e| RoomError::InvalidData(e.to_string()))?;
        self.node
            .publish(&self.hub, Event::message(room, event, data, None));
        Ok(())
    }

    /// Sends `message` to every connection of `user` (every node, raw and
    /// signed-in Pusher connections alike: text only reaches the latter).
    pub fn to_user(&self, user: &str, message: impl Into<Message>) -> Result<(), RoomError> {
        let channel = user_channel(user);
        room_name(&channel)?;
        self.node
            .publish(&self.hub, Event::new(channel, raw(message.into()), None));
        Ok(())
    }

    /// Sends `message` to one connection of this node; false when no such
    /// connection is open here (or it is closing).
    pub fn emit(&self, to: &SocketId, message: impl Into<Message>) -> bool {
        let conn = self.registry.conns.lock().get(to).cloned();
        conn.is_some_and(|c| c.send(message.into().into_frame()))
    }

    /// Sends `message` to every raw connection of this app on this node but
    /// those in `except`; returns how many got it.
    pub fn broadcast_all(&self, message: impl Into<Message>, except: &[SocketId]) -> usize {
        let frame = message.into().into_frame();
        let conns: Vec<Arc<Connection>> = self.registry.conns.lock().values().cloned().collect();
        conns
            .iter()
            .filter(|c| !except.contains(&c.socket_id))
            .filter(|c| c.send(frame.clone()))
            .count()
    }

    /// Connections in `room` on this node.
    pub fn size(&self, room: &str) -> usize {
        self.hub.channel(room).map_or(0, |c| c.subscription_count)
    }

    /// Raw connections of this app on this node.
    pub fn connections(&self) -> usize {
        self.registry.conns.lock().len()
    }
}

/// The channel every connection of `user` is in.
pub(crate) fn user_channel(user: &str) -> String {
    format!("{SERVER_TO_USER_PREFIX}{user}")
}
