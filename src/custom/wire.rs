//! The wire format of raw connections (custom routes), as the core's
//! per-event encoding cache sees it.
//!
//! - A handler's message ([`EventKind::Raw`]) goes out exactly as given:
//!   text as a text frame, binary as a binary frame, no envelope.
//! - A Pusher-style event (an HTTP API trigger, or [`super::Rooms::trigger`])
//!   goes out as one text frame holding the JSON envelope
//!   `{"event":NAME,"channel":ROOM,"data":DATA}` where `DATA` is the event's
//!   data exactly as it arrived (Pusher SDKs send a JSON *string*, so a
//!   browser reads `JSON.parse(frame).data`, as pusher-js would), plus
//!   `"user_id"` when the event has one.
//! - Presence and subscription-count notices are Pusher internals and are
//!   not carried (encoded empty, so the fan-out skips the connection).

use bytes::Bytes;

use crate::core::connection::{Wire, WireVariant};
use crate::core::event::{Event, EventKind};

/// The raw front-end's wire ([`WireVariant::Raw`] in the encoding cache).
pub static RAW_WIRE: Wire = Wire {
    name: "raw",
    variant: WireVariant::Raw,
    encode: encode_event,
    notice: |_, _| None,
};

fn push_str(out: &mut Vec<u8>, s: &str) {
    // Writing into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

/// The JSON envelope for an application event.
pub fn envelope(name: &str, channel: &str, data: &str, user_id: Option<&str>) -> Bytes {
    let mut out = Vec::with_capacity(name.len() + channel.len() + data.len() + 40);
    out.extend_from_slice(b"{\"event\":");
    push_str(&mut out, name);
    out.extend_from_slice(b",\"channel\":");
    push_str(&mut out, channel);
    out.extend_from_slice(b",\"data\":");
    out.extend_from_slice(data.as_bytes());
    if let Some(user) = user_id {
        out.extend_from_slice(b",\"user_id\":");
        push_str(&mut out, user);
    }
    out.push(b'}');
    Bytes::from(out)
}

fn encode_event(event: &Event) -> Bytes {
    match &event.kind {
        EventKind::Raw { payload, .. } => payload.clone(),
        EventKind::Message {
            name,
            data,
            user_id,
        } => envelope(name, &event.channel, data.as_str(), user_id.as_deref()),
        EventKind::MemberAdded(_)
        | EventKind::MemberRemoved(_)
        | EventKind::SubscriptionCount(_) => Bytes::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::event::RawJson;

    #[test]
    fn api_events_get_the_json_envelope() {
        let event = Event::message("lobby", "greet", RawJson::string("{\"a\":1}"), None);
        let frame = event.frame(&RAW_WIRE).unwrap();
        assert!(!frame.binary);
        let v: serde_json::Value = serde_json::from_slice(&frame.data).unwrap();
        assert_eq!(v["event"], "greet");
        assert_eq!(v["channel"], "lobby");
        assert_eq!(v["data"], "{\"a\":1}");
    }

    #[test]
    fn raw_payloads_pass_through_and_internals_are_skipped() {
        let raw = Event::new(
            "r",
            EventKind::Raw {
                payload: Bytes::from_static(b"\xff\x00"),
                binary: true,
            },
            None,
        );
        let frame = raw.frame(&RAW_WIRE).unwrap();
        assert!(frame.binary);
        assert_eq!(&frame.data[..], b"\xff\x00");
        let count = Event::new("r", EventKind::SubscriptionCount(3), None);
        assert!(count.frame(&RAW_WIRE).is_none());
    }
}
