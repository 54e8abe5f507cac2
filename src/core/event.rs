//! What travels to subscribers: an event on a channel, wire-format free.
//!
//! An [`Event`] is built once per publish and shared (`Arc`) by every
//! recipient. Its encodings are cached per wire format the first time a
//! recipient of that format needs one, so a broadcast to 10,000 pusher-js
//! clients and 10 Socket.IO clients costs two encodings, not 10,010.

use std::sync::OnceLock;

use bytes::Bytes;

use super::connection::{Frame, SocketId, Wire, WireVariant};

/// A JSON value kept as the exact text it arrived as. Forwarding never
/// parses it: the `data` of an event is opaque to the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawJson(Box<str>);

impl RawJson {
    /// Wraps text the caller has already validated as one JSON value.
    pub fn from_validated(text: impl Into<Box<str>>) -> Self {
        RawJson(text.into())
    }

    /// Validates `text` as JSON and wraps it.
    pub fn parse(text: &str) -> Result<Self, serde_json::Error> {
        let raw: &serde_json::value::RawValue = serde_json::from_str(text)?;
        Ok(RawJson(raw.get().into()))
    }

    /// A JSON string literal holding `s`.
    pub fn string(s: &str) -> Self {
        RawJson(serde_json::Value::from(s).to_string().into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether the value is a JSON string (as the Pusher HTTP API sends data).
    pub fn is_string(&self) -> bool {
        self.0.starts_with('"')
    }
}

/// A presence member: the user id as sent by the app (number or string) and
/// the optional `user_info` object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// The id as text, used to deduplicate (`7` and `"7"` are one user).
    pub key: Box<str>,
    /// The id exactly as the app wrote it.
    pub id: RawJson,
    pub info: Option<RawJson>,
}

impl Member {
    /// Derives the member from its id value; `key` is the id as plain text.
    pub fn new(id: RawJson, info: Option<RawJson>) -> Self {
        let key = match serde_json::from_str::<String>(id.as_str()) {
            Ok(s) => s.into(),
            Err(_) => id.as_str().into(),
        };
        Member { key, id, info }
    }
}

/// What happened on the channel.
#[derive(Debug)]
pub enum EventKind {
    /// An application event (HTTP API, Redis, client event).
    Message {
        name: Box<str>,
        data: RawJson,
        /// The sender's user id, added to client events on presence channels.
        user_id: Option<Box<str>>,
    },
    /// A user's first connection joined a presence channel.
    MemberAdded(Member),
    /// A user's last connection left a presence channel.
    MemberRemoved(Member),
    /// The channel's subscriber count changed (opt-in).
    SubscriptionCount(usize),
    /// A message from server-side code (a custom route's handler) that is
    /// delivered exactly as given, with no envelope: raw WebSocket
    /// connections receive `payload` as a text or binary message. A wire
    /// that cannot carry it encodes it as empty bytes and is skipped (the
    /// Pusher wire forwards text as-is and skips binary).
    Raw { payload: Bytes, binary: bool },
}

/// One event on one channel, shared by all its recipients.
#[derive(Debug)]
pub struct Event {
    pub channel: Box<str>,
    pub kind: EventKind,
    /// A connection that must not receive it (the sender, or `toOthers()`).
    pub exclude: Option<SocketId>,
    /// Further connections to skip ("everyone but these"); empty, and so
    /// allocation-free, for every event but such broadcasts.
    also_exclude: Box<[SocketId]>,
    encoded: [OnceLock<Bytes>; WireVariant::COUNT],
}

impl Event {
    pub fn new(channel: impl Into<Box<str>>, kind: EventKind, exclude: Option<SocketId>) -> Self {
        Event {
            channel: channel.into(),
            kind,
            exclude,
            also_exclude: Box::default(),
            encoded: Default::default(),
        }
    }

    /// Skips these connections too (a broadcast with an exclusion list).
    pub fn also_excluding(mut self, sockets: impl IntoIterator<Item = SocketId>) -> Self {
        self.also_exclude = sockets.into_iter().collect();
        self
    }

    /// The further connections skipped (see [`Event::also_excluding`]).
    pub fn also_excluded(&self) -> &[SocketId] {
        &self.also_exclude
    }

    /// Whether the event goes out as a binary WebSocket frame.
    pub fn is_binary(&self) -> bool {
        matches!(self.kind, EventKind::Raw { binary: true, .. })
    }

    /// An application event.
    pub fn message(
        channel: impl Into<Box<str>>,
        name: impl Into<Box<str>>,
        data: RawJson,
        exclude: Option<SocketId>,
    ) -> Self {
        Event::new(
            channel,
            EventKind::Message {
                name: name.into(),
                data,
                user_id: None,
            },
            exclude,
        )
    }

    /// The frame for `wire`, encoded on first use and shared afterwards.
    pub fn encoded(&self, wire: &Wire) -> Bytes {
        self.encoded[wire.variant.index()]
            .get_or_init(|| (wire.encode)(self))
            .clone()
    }

    /// The outbox frame for `wire`, or `None` when that wire does not carry
    /// this event (its encoding is empty: an empty message says nothing).
    pub fn frame(&self, wire: &Wire) -> Option<Frame> {
        let data = self.encoded(wire);
        (!data.is_empty()).then_some(Frame {
            data,
            binary: self.is_binary(),
        })
    }

    /// Whether `socket` must be skipped.
    pub fn excludes(&self, socket: &SocketId) -> bool {
        self.exclude.as_ref() == Some(socket) || self.also_exclude.contains(socket)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    static CALLS: AtomicUsize = AtomicUsize::new(0);
    fn counting(_: &Event) -> Bytes {
        CALLS.fetch_add(1, Ordering::SeqCst);
        Bytes::from_static(b"frame")
    }
    static COUNTING: Wire = Wire {
        name: "counting",
        variant: crate::core::connection::WireVariant::TestA,
        encode: counting,
        notice: |_, _| None,
    };

    #[test]
    fn encodes_once_per_wire() {
        let event = Event::message("c", "e", RawJson::string("d"), None);
        for _ in 0..100 {
            assert_eq!(&event.encoded(&COUNTING)[..], b"frame");
        }
        assert_eq!(CALLS.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn raw_json() {
        assert!(RawJson::parse("{\"a\":1}").is_ok());
        assert!(RawJson::parse("{oops").is_err());
        assert_eq!(RawJson::string("a\"b").as_str(), "\"a\\\"b\"");
        assert!(RawJson::string("x").is_string());
    }

    #[test]
    fn member_keys_dedupe_numbers_and_strings() {
        let a = Member::new(RawJson::parse("7").unwrap(), None);
        let b = Member::new(RawJson::parse("\"7\"").unwrap(), None);
        assert_eq!(a.key, b.key);
    }
}
