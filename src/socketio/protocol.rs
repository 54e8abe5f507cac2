//! The Socket.IO packets Laravel Echo's `socket.io` connector exchanges,
//! for Socket.IO protocol v4 (client 2.x, Engine.IO 3) and v5 (client 4.x,
//! Engine.IO 4): `0` connect, `1` disconnect, `2[...]` event, for namespace
//! `/` only.
//!
//! Outgoing packets are built as the Engine.IO *message* they travel in
//! (`4` + the Socket.IO packet, e.g. `42["event","channel",{..}]`): that is
//! the exact text of a WebSocket frame for both Engine.IO 3 and 4, so a
//! broadcast is encoded once for all Socket.IO recipients, whatever their
//! version, and the lean WebSocket transport ([`super::lean`]) writes the
//! shared bytes as they are. The engineioxide transport (polling and
//! upgrades, [`super::engine`]) frames messages itself and gets the same
//! bytes without their first one ([`strip_message_type`], no copy).

use bytes::Bytes;
use serde_json::value::RawValue;

use crate::core::connection::{Wire, WireVariant};
use crate::core::event::{Event, EventKind, Member};

/// The Socket.IO front-end's wire ([`WireVariant::SocketIo`] in the encoding cache).
pub static SOCKETIO_WIRE: Wire = Wire {
    name: "socket.io",
    variant: WireVariant::SocketIo,
    encode: encode_event,
    notice: |_, _| None,
};

fn push_str(out: &mut Vec<u8>, s: &str) {
    let _ = serde_json::to_writer(&mut *out, s);
}

/// The Engine.IO message packet type, in front of every Socket.IO packet.
pub const MESSAGE: u8 = b'4';

/// A packet built here without its Engine.IO message type (for a transport
/// that adds it itself). Shares the bytes.
pub fn strip_message_type(frame: &Bytes) -> Bytes {
    if frame.first() == Some(&MESSAGE) {
        frame.slice(1..)
    } else {
        frame.clone()
    }
}

/// `42["event","channel",<args...>]` with each arg raw JSON.
pub fn event_packet(event: &str, channel: &str, args: &[&str]) -> Bytes {
    let len: usize = args.iter().map(|a| a.len() + 1).sum();
    let mut out = Vec::with_capacity(len + event.len() + channel.len() + 16);
    out.extend_from_slice(b"42[");
    push_str(&mut out, event);
    out.push(b',');
    push_str(&mut out, channel);
    for arg in args {
        out.push(b',');
        out.extend_from_slice(arg.as_bytes());
    }
    out.push(b']');
    Bytes::from(out)
}

/// `{"user_id":..,"user_info":..}` as Echo's presence callbacks read it.
pub fn member_json(member: &Member) -> String {
    format!(
        "{{\"user_id\":{},\"user_info\":{}}}",
        member.id.as_str(),
        member.info.as_ref().map_or("null", |i| i.as_str())
    )
}

/// Data as Echo's socket.io listeners expect it: an object. The Pusher API
/// sends data as a JSON string holding JSON; that is unwrapped (once per
/// broadcast), anything else is passed as it is.
fn unwrap_data(raw: &str) -> std::borrow::Cow<'_, str> {
    if raw.starts_with('"')
        && let Ok(inner) = serde_json::from_str::<String>(raw)
        && serde_json::from_str::<&RawValue>(&inner).is_ok()
    {
        return inner.into();
    }
    raw.into()
}

/// Encodes a core event for Socket.IO clients. Events that the Echo
/// connector has no use for (subscription counts) encode to nothing, and the
/// sender skips empty frames.
pub fn encode_event(event: &Event) -> Bytes {
    let channel = &*event.channel;
    match &event.kind {
        EventKind::Message { name, data, .. } => {
            event_packet(name, channel, &[&unwrap_data(data.as_str())])
        }
        EventKind::MemberAdded(m) => event_packet("presence:joining", channel, &[&member_json(m)]),
        EventKind::MemberRemoved(m) => {
            event_packet("presence:leaving", channel, &[&member_json(m)])
        }
        // Counts and custom routes' raw frames mean nothing to Echo.
        EventKind::SubscriptionCount(_) | EventKind::Raw { .. } => Bytes::new(),
    }
}

/// `presence:subscribed` for the joiner: every member, deduplicated.
pub fn presence_subscribed(channel: &str, members: &[&Member]) -> Bytes {
    let list = format!(
        "[{}]",
        members
            .iter()
            .map(|m| member_json(m))
            .collect::<Vec<_>>()
            .join(",")
    );
    event_packet("presence:subscribed", channel, &[&list])
}

/// `subscription_error` with the HTTP status of the refusal.
pub fn subscription_error(channel: &str, status: u16) -> Bytes {
    event_packet("subscription_error", channel, &[&status.to_string()])
}

/// `40{"sid":..}`: the namespace `/` is connected (the answer to a
/// Socket.IO 5 client's connect; Socket.IO 4 clients get a bare `40`).
pub fn connected(sid: &str) -> Bytes {
    let mut out = Vec::with_capacity(sid.len() + 12);
    out.extend_from_slice(b"40{\"sid\":");
    push_str(&mut out, sid);
    out.push(b'}');
    Bytes::from(out)
}

/// `44/ns,{"message":"Invalid namespace"}`: only `/` is served.
pub fn invalid_namespace(namespace: &str) -> Bytes {
    Bytes::from(format!(
        "44{namespace},{{\"message\":\"Invalid namespace\"}}"
    ))
}

/// A packet from a client.
#[derive(Debug)]
pub enum Packet<'a> {
    /// `0` (v5 carries an auth payload; v4 clients never send it for `/`).
    Connect {
        namespace: &'a str,
    },
    Disconnect,
    /// `2[...]`: the event name and its first argument (raw JSON).
    Event {
        name: String,
        arg: Option<&'a RawValue>,
    },
    /// Anything this server does not serve (acks, binary, other namespaces).
    Other,
}

/// Parses one Socket.IO packet (without the Engine.IO `4` prefix).
pub fn parse(text: &str) -> Result<Packet<'_>, String> {
    let Some(kind) = text.chars().next() else {
        return Err("empty packet".into());
    };
    // The type is one character; it may be any character a client sends.
    let mut rest = &text[kind.len_utf8()..];
    let mut namespace = "/";
    if rest.starts_with('/') {
        let end = rest.find(',').unwrap_or(rest.len());
        namespace = &rest[..end];
        rest = rest.get(end + 1..).unwrap_or("");
    }
    match kind {
        '0' => Ok(Packet::Connect { namespace }),
        '1' => Ok(Packet::Disconnect),
        '2' if namespace == "/" => {
            // An ack id (digits) may precede the array; Echo sends none.
            let rest = rest.trim_start_matches(|c: char| c.is_ascii_digit());
            let args: Vec<&RawValue> = serde_json::from_str(rest)
                .map_err(|e| format!("event is not a JSON array: {e}"))?;
            let name = args
                .first()
                .and_then(|n| serde_json::from_str::<String>(n.get()).ok())
                .ok_or("event without a name")?;
            Ok(Packet::Event {
                name,
                arg: args.get(1).copied(),
            })
        }
        _ => Ok(Packet::Other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::event::RawJson;

    fn text(b: &Bytes) -> &str {
        std::str::from_utf8(b).unwrap()
    }

    #[test]
    fn events_carry_objects() {
        let from_redis = Event::message(
            "orders",
            "App\\Events\\OrderShipped",
            RawJson::parse(r#"{"id":5}"#).unwrap(),
            None,
        );
        assert_eq!(
            text(&encode_event(&from_redis)),
            r#"42["App\\Events\\OrderShipped","orders",{"id":5}]"#
        );
        let from_api = Event::message(
            "orders",
            "X",
            RawJson::parse(r#""{\"id\":5}""#).unwrap(),
            None,
        );
        assert_eq!(
            text(&encode_event(&from_api)),
            r#"42["X","orders",{"id":5}]"#
        );
        let plain_string = Event::message("orders", "X", RawJson::string("hello"), None);
        assert_eq!(
            text(&encode_event(&plain_string)),
            r#"42["X","orders","hello"]"#
        );
    }

    #[test]
    fn presence_packets() {
        let m = Member::new(
            RawJson::parse("7").unwrap(),
            Some(RawJson::parse(r#"{"name":"A"}"#).unwrap()),
        );
        assert_eq!(
            text(&presence_subscribed("presence-r", &[&m])),
            r#"42["presence:subscribed","presence-r",[{"user_id":7,"user_info":{"name":"A"}}]]"#
        );
        let joined = Event::new("presence-r", EventKind::MemberAdded(m), None);
        assert_eq!(
            text(&encode_event(&joined)),
            r#"42["presence:joining","presence-r",{"user_id":7,"user_info":{"name":"A"}}]"#
        );
        assert_eq!(
            text(&subscription_error("private-x", 403)),
            r#"42["subscription_error","private-x",403]"#
        );
    }

    #[test]
    fn parses_client_packets() {
        match parse(r#"2["subscribe",{"channel":"orders","auth":{"headers":{}}}]"#).unwrap() {
            Packet::Event { name, arg } => {
                assert_eq!(name, "subscribe");
                assert!(arg.unwrap().get().contains("orders"));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse("0").unwrap(),
            Packet::Connect { namespace: "/" }
        ));
        assert!(matches!(
            parse(r#"0{"token":"x"}"#).unwrap(),
            Packet::Connect { namespace: "/" }
        ));
        assert!(matches!(
            parse("0/admin,").unwrap(),
            Packet::Connect {
                namespace: "/admin"
            }
        ));
        assert!(matches!(parse("1").unwrap(), Packet::Disconnect));
        assert!(matches!(
            parse(r#"212["x"]"#).unwrap(),
            Packet::Event { .. }
        ));
        assert!(parse("2not json").is_err());
        assert!(parse("2[]").is_err());
        assert!(parse("").is_err());
        // A multi-byte first character is just an unknown packet type.
        assert!(matches!(parse("é2[\"x\"]").unwrap(), Packet::Other));
        assert!(matches!(parse("€").unwrap(), Packet::Other));
        assert!(matches!(parse(r#"2/other,["x"]"#).unwrap(), Packet::Other));
    }
}
