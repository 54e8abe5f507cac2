//! The debug console's event log: the core's happenings stream
//! ([`crate::core::happenings`]) turned into lines for one app.
//!
//! Zero cost when nobody watches: a live dashboard socket subscribes to the
//! stream only while it is open, and the core builds a happening only when
//! somebody subscribes (one atomic load otherwise). The stream is bounded;
//! a viewer that falls behind is told how many lines it missed.
//!
//! The log shows what this node sees: its own connections, subscriptions
//! and API events, and the cluster-wide happenings this node emitted
//! (client events that entered here; occupancy and presence decided here).

use serde_json::{Value, json};

use crate::core::connection::WireVariant;
use crate::core::happenings::{ClusterWide, Happening, NodeLocal, SeenEverywhere, What};

/// Longest data text kept per line (client event data is cut, not copied
/// whole).
const MAX_DETAIL: usize = 512;

fn cut(text: &str) -> String {
    let mut end = text.len().min(MAX_DETAIL);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let mut out = text[..end].to_string();
    if end < text.len() {
        out.push('…');
    }
    out
}

fn wire(w: &WireVariant) -> &'static str {
    match w {
        WireVariant::Pusher => "pusher",
        WireVariant::SocketIo => "socket.io",
        WireVariant::Raw => "raw websocket",
        #[allow(unreachable_patterns)]
        _ => "other",
    }
}

fn line(
    kind: &str,
    channel: Option<&str>,
    event: Option<&str>,
    socket: Option<&str>,
    detail: Option<String>,
) -> Value {
    json!({
        "kind": kind,
        "channel": channel,
        "event": event,
        "socket_id": socket,
        "detail": detail,
    })
}

/// The console line of a happening (`at` is added by the caller).
pub fn entry(h: &Happening) -> Value {
    match &h.what {
        What::Node(n) => match n {
            NodeLocal::ConnectionOpened { socket_id, wire: w } => line(
                "connection",
                None,
                None,
                Some(socket_id.as_str()),
                Some(wire(w).into()),
            ),
            NodeLocal::ConnectionClosed { socket_id, wire: w } => line(
                "disconnection",
                None,
                None,
                Some(socket_id.as_str()),
                Some(wire(w).into()),
            ),
            NodeLocal::Subscribed { socket_id, channel } => line(
                "subscribed",
                Some(channel),
                None,
                Some(socket_id.as_str()),
                None,
            ),
            NodeLocal::Unsubscribed { socket_id, channel } => line(
                "unsubscribed",
                Some(channel),
                None,
                Some(socket_id.as_str()),
                None,
            ),
            NodeLocal::ApiEvent { channels, event } => {
                let names: Vec<&str> = channels.iter().map(|c| &**c).collect();
                line(
                    "api_message",
                    Some(&names.join(", ")),
                    Some(event),
                    None,
                    None,
                )
            }
        },
        What::Cluster(c) => match c {
            ClusterWide::ChannelOccupied { channel } => {
                line("occupied", Some(channel), None, None, None)
            }
            ClusterWide::ChannelVacated { channel } => {
                line("vacated", Some(channel), None, None, None)
            }
            ClusterWide::MemberAdded { channel, user_id } => line(
                "member_added",
                Some(channel),
                None,
                None,
                Some(format!("user {user_id}")),
            ),
            ClusterWide::MemberRemoved { channel, user_id } => line(
                "member_removed",
                Some(channel),
                None,
                None,
                Some(format!("user {user_id}")),
            ),
            ClusterWide::ClientEvent {
                channel,
                event,
                data,
                socket_id,
                user_id,
            } => {
                let by = user_id
                    .as_ref()
                    .map_or(String::new(), |u| format!("user {u}: "));
                line(
                    "client_event",
                    Some(channel),
                    Some(event),
                    Some(socket_id.as_str()),
                    Some(format!("{by}{}", cut(data.as_str()))),
                )
            }
            ClusterWide::CacheMiss { channel } => {
                line("cache_miss", Some(channel), None, None, None)
            }
            ClusterWide::SubscriptionCount { channel, count } => line(
                "subscription_count",
                Some(channel),
                None,
                None,
                Some(count.to_string()),
            ),
        },
        What::Seen(s) => match s {
            SeenEverywhere::UserOnline { user_id } => line(
                "user_online",
                None,
                None,
                None,
                Some(format!("user {user_id}")),
            ),
            SeenEverywhere::UserOffline { user_id } => line(
                "user_offline",
                None,
                None,
                None,
                Some(format!("user {user_id}")),
            ),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::event::RawJson;
    use std::sync::Arc;

    #[test]
    fn client_event_data_is_cut_on_a_char_boundary() {
        let data = serde_json::to_string(&"é".repeat(400)).unwrap();
        let h = Happening {
            app: Arc::from("1"),
            what: What::Cluster(ClusterWide::ClientEvent {
                channel: "private-a".into(),
                event: "client-typing".into(),
                data: RawJson::from_validated(data),
                socket_id: crate::core::connection::SocketId::generate(),
                user_id: Some("7".into()),
            }),
        };
        let v = entry(&h);
        assert_eq!(v["kind"], "client_event");
        let detail = v["detail"].as_str().unwrap();
        assert!(detail.starts_with("user 7: \"é"), "{detail}");
        assert!(detail.ends_with('…'), "{detail}");
        assert!(detail.len() <= MAX_DETAIL + 16, "{}", detail.len());
    }
}
