//! The Pusher protocol's JSON frames (reference §1–§2).
//!
//! Server frames carry `data` as a JSON-encoded *string*; the envelope is
//! written by hand into one buffer so that a broadcast costs one allocation
//! and no serde tree, and an event's `data` (already a JSON string when it
//! came from the HTTP API) is copied verbatim, never parsed.

use std::borrow::Cow;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::core::connection::{Wire, WireVariant};
use crate::core::event::{Event, EventKind, Member};

/// The Pusher front-end's wire ([`WireVariant::Pusher`] in the encoding cache).
pub static PUSHER_WIRE: Wire = Wire {
    name: "pusher",
    variant: WireVariant::Pusher,
    encode: encode_event,
    notice: |code, reason| Some(error(Some(code), reason)),
};

/// Appends `s` as a JSON string literal.
fn push_str(out: &mut Vec<u8>, s: &str) {
    // Writing into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

/// `{"event":E[,"channel":C],"data":D` — the caller closes the object.
fn open(event: &str, channel: Option<&str>, capacity: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(capacity + event.len() + 48);
    out.extend_from_slice(b"{\"event\":");
    push_str(&mut out, event);
    if let Some(channel) = channel {
        out.extend_from_slice(b",\"channel\":");
        push_str(&mut out, channel);
    }
    out.extend_from_slice(b",\"data\":");
    out
}

/// A complete frame whose `data` is `inner` (JSON) encoded as a string.
pub fn frame(event: &str, channel: Option<&str>, inner: &str) -> Bytes {
    let mut out = open(event, channel, inner.len() + inner.len() / 8 + 8);
    push_str(&mut out, inner);
    out.push(b'}');
    Bytes::from(out)
}

/// Encodes a core event for pusher-js (once per broadcast).
pub fn encode_event(event: &Event) -> Bytes {
    let channel = Some(&*event.channel);
    match &event.kind {
        EventKind::Message {
            name,
            data,
            user_id,
        } => {
            let raw = data.as_str();
            let mut out = open(name, channel, raw.len() + 16);
            if data.is_string() {
                out.extend_from_slice(raw.as_bytes());
            } else {
                push_str(&mut out, raw);
            }
            if let Some(user) = user_id {
                out.extend_from_slice(b",\"user_id\":");
                push_str(&mut out, user);
            }
            out.push(b'}');
            Bytes::from(out)
        }
        EventKind::MemberAdded(member) => {
            let info = member.info.as_ref().map_or("null", |i| i.as_str());
            let inner = format!(
                "{{\"user_id\":{},\"user_info\":{info}}}",
                member.id.as_str()
            );
            frame("pusher_internal:member_added", channel, &inner)
        }
        EventKind::MemberRemoved(member) => {
            let inner = format!("{{\"user_id\":{}}}", member.id.as_str());
            frame("pusher_internal:member_removed", channel, &inner)
        }
        EventKind::SubscriptionCount(n) => frame(
            "pusher_internal:subscription_count",
            channel,
            &format!("{{\"subscription_count\":{n}}}"),
        ),
        // A custom route's raw message reaches Pusher clients of the same
        // channel only when it is itself a Pusher event on this channel
        // (the sender chose to speak to them too). Anything
        // else (a chat line, a binary frame) would break pusher-js, which
        // throws on a frame without "event": skipped (empty = not carried).
        EventKind::Raw { payload, binary } => {
            if !*binary && is_pusher_event_on(payload, &event.channel) {
                payload.clone()
            } else {
                Bytes::new()
            }
        }
    }
}

/// Whether `payload` is a Pusher event on `channel`: a JSON object with a
/// string `"event"` that is not a protocol event (`pusher:*`,
/// `pusher_internal:*`) and a `"channel"` equal to the room it was sent to.
/// Anything else could pose as another channel's event (pusher-js routes a
/// frame by its own `channel` field) or as a protocol message.
fn is_pusher_event_on(payload: &[u8], channel: &str) -> bool {
    #[derive(serde::Deserialize)]
    struct Shape<'a> {
        #[serde(borrow)]
        event: std::borrow::Cow<'a, str>,
        #[serde(borrow)]
        channel: Option<std::borrow::Cow<'a, str>>,
    }
    serde_json::from_slice::<Shape<'_>>(payload).is_ok_and(|shape| {
        !shape.event.starts_with("pusher:")
            && !shape.event.starts_with("pusher_internal:")
            && shape.channel.as_deref() == Some(channel)
    })
}

pub fn connection_established(socket_id: &str, activity_timeout: u64) -> Bytes {
    frame(
        "pusher:connection_established",
        None,
        &format!("{{\"socket_id\":\"{socket_id}\",\"activity_timeout\":{activity_timeout}}}"),
    )
}

pub fn pong() -> Bytes {
    Bytes::from_static(br#"{"event":"pusher:pong","data":"{}"}"#)
}

pub fn ping() -> Bytes {
    Bytes::from_static(br#"{"event":"pusher:ping","data":"{}"}"#)
}

/// `pusher:error`; `code` is `null` where Pusher sends none.
pub fn error(code: Option<u16>, message: &str) -> Bytes {
    let code = code.map_or_else(|| "null".to_string(), |c| c.to_string());
    let inner = serde_json::json!({ "message": message }).to_string();
    // {"message":...} → {"code":N,"message":...}
    let inner = format!("{{\"code\":{code},{}", &inner[1..]);
    frame("pusher:error", None, &inner)
}

/// `pusher_internal:subscription_succeeded`, with the member list on
/// presence channels.
pub fn subscription_succeeded(channel: &str, members: Option<&[&Member]>) -> Bytes {
    let inner = match members {
        None => "{}".to_string(),
        Some(members) => {
            let mut ids = String::from("[");
            let mut hash = String::from("{");
            for (i, m) in members.iter().enumerate() {
                if i > 0 {
                    ids.push(',');
                    hash.push(',');
                }
                ids.push_str(m.id.as_str());
                hash.push_str(&serde_json::Value::from(&*m.key).to_string());
                hash.push(':');
                hash.push_str(m.info.as_ref().map_or("null", |i| i.as_str()));
            }
            format!(
                "{{\"presence\":{{\"ids\":{ids}],\"hash\":{hash}}},\"count\":{}}}}}",
                members.len()
            )
        }
    };
    frame(
        "pusher_internal:subscription_succeeded",
        Some(channel),
        &inner,
    )
}

/// `pusher:subscription_error` on `channel`: Echo's `.error()` callback and
/// pusher-js's `pusher:subscription_error` binding both receive it.
pub fn subscription_error(channel: &str, kind: &str, message: &str, status: u16) -> Bytes {
    let inner = serde_json::json!({ "type": kind, "error": message, "status": status }).to_string();
    frame("pusher:subscription_error", Some(channel), &inner)
}

pub fn cache_miss(channel: &str) -> Bytes {
    frame("pusher:cache_miss", Some(channel), "{}")
}

pub fn signin_success(user_data: &str) -> Bytes {
    let inner = serde_json::json!({ "user_data": user_data }).to_string();
    frame("pusher:signin_success", None, &inner)
}

/// A frame from a client, with `data` left unparsed.
#[derive(Debug, Deserialize)]
pub struct ClientFrame<'a> {
    #[serde(borrow)]
    pub event: Cow<'a, str>,
    #[serde(borrow, default)]
    pub channel: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub data: Option<&'a RawValue>,
}

impl<'a> ClientFrame<'a> {
    pub fn parse(text: &'a str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text)
    }

    /// Parses `data` as `T`, accepting an object or a string holding one
    /// (some clients double-encode control data too).
    pub fn data_as<T: for<'de> Deserialize<'de>>(&self) -> Result<T, String> {
        let raw = self.data.ok_or("the event has no data")?;
        match serde_json::from_str::<T>(raw.get()) {
            Ok(v) => Ok(v),
            Err(first) => match serde_json::from_str::<String>(raw.get()) {
                Ok(inner) => serde_json::from_str(&inner).map_err(|e| e.to_string()),
                Err(_) => Err(first.to_string()),
            },
        }
    }
}

/// `pusher:subscribe` data.
#[derive(Debug, Deserialize)]
pub struct SubscribeData {
    pub channel: String,
    #[serde(default)]
    pub auth: Option<String>,
    #[serde(default)]
    pub channel_data: Option<String>,
}

/// `pusher:unsubscribe` data.
#[derive(Debug, Deserialize)]
pub struct UnsubscribeData {
    pub channel: String,
}

/// `pusher:signin` data.
#[derive(Debug, Deserialize)]
pub struct SigninData {
    pub auth: String,
    pub user_data: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::event::RawJson;

    fn json(b: &Bytes) -> serde_json::Value {
        serde_json::from_slice(b).unwrap()
    }

    #[test]
    fn raw_messages_reach_pusher_clients_only_as_pusher_frames() {
        let raw = |payload: &'static [u8], binary| {
            let event = Event::new(
                "room",
                EventKind::Raw {
                    payload: Bytes::from_static(payload),
                    binary,
                },
                None,
            );
            encode_event(&event)
        };
        // A chat line or any JSON without "event" would make pusher-js throw.
        assert!(raw(br#"{"type":"users","users":["a"]}"#, false).is_empty());
        assert!(raw(b"hello", false).is_empty());
        assert!(raw(br#"{"event":"x","channel":"room","data":"{}"}"#, true).is_empty());
        // Posing as another channel's event, or as a protocol message.
        assert!(
            raw(
                br#"{"event":"x","channel":"private-u.1","data":"{}"}"#,
                false
            )
            .is_empty()
        );
        assert!(raw(br#"{"event":"x","data":"{}"}"#, false).is_empty());
        assert!(
            raw(
                br#"{"event":"pusher:error","channel":"room","data":{}}"#,
                false
            )
            .is_empty()
        );
        assert!(
            raw(
                br#"{"event":"pusher_internal:member_added","channel":"room","data":"{}"}"#,
                false
            )
            .is_empty()
        );
        assert_eq!(
            &raw(br#"{"event":"x","channel":"room","data":"{}"}"#, false)[..],
            br#"{"event":"x","channel":"room","data":"{}"}"#
        );
    }

    #[test]
    fn message_data_is_a_string_on_the_wire() {
        let from_api = Event::message("c", "e", RawJson::parse(r#""{\"a\":1}""#).unwrap(), None);
        let v = json(&encode_event(&from_api));
        assert_eq!(v["event"], "e");
        assert_eq!(v["channel"], "c");
        assert_eq!(v["data"], "{\"a\":1}");

        let object = Event::message("c", "e", RawJson::parse(r#"{"a":1}"#).unwrap(), None);
        assert_eq!(json(&encode_event(&object))["data"], "{\"a\":1}");
    }

    #[test]
    fn client_event_carries_user_id() {
        let mut event = Event::message(
            "presence-r",
            "client-x",
            RawJson::parse("{}").unwrap(),
            None,
        );
        if let EventKind::Message { user_id, .. } = &mut event.kind {
            *user_id = Some("7".into());
        }
        assert_eq!(json(&encode_event(&event))["user_id"], "7");
    }

    #[test]
    fn presence_frames() {
        let m = Member::new(
            RawJson::parse("7").unwrap(),
            Some(RawJson::parse(r#"{"name":"A"}"#).unwrap()),
        );
        let ok = json(&subscription_succeeded("presence-r", Some(&[&m])));
        let inner: serde_json::Value = serde_json::from_str(ok["data"].as_str().unwrap()).unwrap();
        assert_eq!(inner["presence"]["ids"][0], 7);
        assert_eq!(inner["presence"]["hash"]["7"]["name"], "A");
        assert_eq!(inner["presence"]["count"], 1);

        let added = json(&encode_event(&Event::new(
            "presence-r",
            EventKind::MemberAdded(m.clone()),
            None,
        )));
        assert_eq!(added["event"], "pusher_internal:member_added");
        let inner: serde_json::Value =
            serde_json::from_str(added["data"].as_str().unwrap()).unwrap();
        assert_eq!(inner["user_id"], 7);
        assert_eq!(inner["user_info"]["name"], "A");
    }

    #[test]
    fn control_frames_parse() {
        let est = json(&connection_established("1.2", 120));
        let inner: serde_json::Value = serde_json::from_str(est["data"].as_str().unwrap()).unwrap();
        assert_eq!(inner["socket_id"], "1.2");
        assert_eq!(inner["activity_timeout"], 120);

        let err = json(&error(Some(4301), "too \"fast\""));
        let inner: serde_json::Value = serde_json::from_str(err["data"].as_str().unwrap()).unwrap();
        assert_eq!(inner["code"], 4301);
        assert_eq!(inner["message"], "too \"fast\"");
        let inner: serde_json::Value =
            serde_json::from_str(json(&error(None, "x"))["data"].as_str().unwrap()).unwrap();
        assert!(inner["code"].is_null());

        json(&subscription_error("private-a", "AuthError", "bad", 401));
        json(&cache_miss("cache-a"));
        json(&signin_success("{\"id\":\"1\"}"));
        json(&pong());
    }

    #[test]
    fn client_frames() {
        let f = ClientFrame::parse(
            r#"{"event":"pusher:subscribe","data":{"channel":"a","auth":"k:s"}}"#,
        )
        .unwrap();
        let d: SubscribeData = f.data_as().unwrap();
        assert_eq!((d.channel.as_str(), d.auth.as_deref()), ("a", Some("k:s")));
        let f = ClientFrame::parse(r#"{"event":"pusher:subscribe","data":"{\"channel\":\"b\"}"}"#)
            .unwrap();
        assert_eq!(f.data_as::<SubscribeData>().unwrap().channel, "b");
        assert!(ClientFrame::parse("{oops").is_err());
        let f = ClientFrame::parse(r#"{"event":"pusher:subscribe"}"#).unwrap();
        assert!(f.data_as::<SubscribeData>().is_err());
    }
}
