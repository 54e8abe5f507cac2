//! What nodes say to each other over the cluster's broker channel. One flat
//! JSON object per message, `t` naming the kind; event data rides as raw
//! JSON, never re-parsed.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::core::event::{Member, RawJson};

/// Message kinds.
pub const EVENT: &str = "e";
pub const JOIN: &str = "j";
pub const LEAVE: &str = "l";
pub const TERMINATE: &str = "k";
pub const QUERY: &str = "q";
pub const REPLY: &str = "r";
/// The end of a departure's hold (occupancy, presence, online users).
pub const SETTLE: &str = "s";
/// A custom route's raw frame (text or binary, base64 in `p`).
pub const RAW: &str = "w";

/// A cluster message. Fields unused by a kind are omitted.
#[derive(Serialize, Deserialize, Default, Debug)]
pub struct Message {
    /// Kind (see the constants).
    pub t: String,
    /// Origin node.
    pub o: String,
    /// App id.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub a: String,
    /// Channel (or, for queries, a prefix filter).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub c: Option<String>,
    /// Event name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<String>,
    /// Event data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub d: Option<Box<RawValue>>,
    /// Excluded socket id (events) or the joining socket (joins).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x: Option<String>,
    /// User: the sender of a client event, the user of a presence delta or
    /// of a terminate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub u: Option<String>,
    /// Presence user id as the app wrote it, and its info.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub i: Option<Box<RawValue>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub f: Option<Box<RawValue>>,
    /// Query id (queries and replies).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub q: Option<u64>,
    /// Raw frame payload (base64) and whether it is binary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub b: bool,
    /// More excluded sockets (broadcasts with an exclusion list).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub xs: Vec<String>,
    /// Reply: (channel, local subscription count) pairs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s: Option<Vec<(String, usize)>>,
}

/// Raw JSON text as a serialisable value (one copy per publish, not per
/// recipient).
pub fn raw(json: &RawJson) -> Option<Box<RawValue>> {
    RawValue::from_string(json.as_str().to_string()).ok()
}

/// The presence member a join delta carries.
pub fn member_of(msg: &Message) -> Option<Member> {
    let id = msg.i.as_ref()?;
    Some(Member::new(
        RawJson::from_validated(id.get()),
        msg.f.as_ref().map(|f| RawJson::from_validated(f.get())),
    ))
}

/// The member as stored in the node's share (a Redis hash): `{"i":id,"f":info}`.
pub fn stored_member(member: &Member) -> String {
    format!(
        "{{\"i\":{},\"f\":{}}}",
        member.id.as_str(),
        member.info.as_ref().map_or("null", |i| i.as_str())
    )
}

/// Reads a member back from its stored form.
pub fn parse_stored_member(text: &str) -> Option<Member> {
    #[derive(Deserialize)]
    struct Stored {
        i: Box<RawValue>,
        f: Option<Box<RawValue>>,
    }
    let s: Stored = serde_json::from_str(text).ok()?;
    let info = s.f.filter(|f| f.get() != "null");
    Some(Member::new(
        RawJson::from_validated(s.i.get()),
        info.map(|f| RawJson::from_validated(f.get())),
    ))
}

/// Field of a node's presence hash: app, channel and user, separated by a
/// unit separator (never part of an id, a channel name or a user key we
/// accept... and if a user key has one, the split takes the first two).
pub fn presence_field(app: &str, channel: &str, user: &str) -> String {
    format!("{app}\u{1f}{channel}\u{1f}{user}")
}

pub fn split_presence_field(field: &str) -> Option<(&str, &str, &str)> {
    let mut parts = field.splitn(3, '\u{1f}');
    Some((parts.next()?, parts.next()?, parts.next()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_round_trip() {
        let m = Member::new(
            RawJson::parse("7").unwrap(),
            Some(RawJson::parse(r#"{"n":"A"}"#).unwrap()),
        );
        let back = parse_stored_member(&stored_member(&m)).unwrap();
        assert_eq!(back, m);
        let bare = Member::new(RawJson::string("x"), None);
        assert_eq!(parse_stored_member(&stored_member(&bare)).unwrap(), bare);
        assert_eq!(
            split_presence_field(&presence_field("1", "presence-a", "u:1")),
            Some(("1", "presence-a", "u:1"))
        );
    }

    #[test]
    fn messages_round_trip() {
        let msg = Message {
            t: EVENT.into(),
            o: "n1".into(),
            a: "1".into(),
            c: Some("orders".into()),
            n: Some("E".into()),
            d: raw(&RawJson::parse(r#"{"id":5}"#).unwrap()),
            ..Message::default()
        };
        let text = serde_json::to_string(&msg).unwrap();
        let back: Message = serde_json::from_str(&text).unwrap();
        assert_eq!(back.d.unwrap().get(), r#"{"id":5}"#);
        assert!(back.x.is_none());
    }
}
