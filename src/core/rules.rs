//! Protocol rules every front-end applies the same way: who may send client
//! events, how fast, and what a presence member is. Kept here so that a
//! whisper or a presence join means the same over Pusher and Socket.IO.

use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::value::RawValue;

use super::app::AppConfig;
use super::channel::ChannelSpec;
use super::event::{Member, RawJson};

/// Longest presence user id (Pusher's limit), in bytes of its JSON text.
const MAX_USER_ID_LEN: usize = 128;

/// Client events allowed per one-second window of one connection.
#[derive(Debug)]
pub struct RateLimit {
    window: Instant,
    used: u32,
}

impl Default for RateLimit {
    fn default() -> Self {
        RateLimit {
            window: Instant::now(),
            used: 0,
        }
    }
}

impl RateLimit {
    /// Counts one event; false when it is over `per_second`.
    pub fn allow(&mut self, per_second: u32) -> bool {
        let now = Instant::now();
        if now.duration_since(self.window) >= Duration::from_secs(1) {
            self.window = now;
            self.used = 0;
        }
        self.used += 1;
        self.used <= per_second
    }
}

/// HTTP-style status of a subscription refused for the per-connection cap
/// (Pusher's "too many requests" family; both front-ends send it).
pub const SUBSCRIPTION_LIMIT_STATUS: u16 = 429;

/// Why one more subscription is refused: `held` counts the connection's
/// subscriptions plus those waiting for the auth endpoint (a client must not
/// get past the cap by subscribing faster than the app answers).
pub fn subscription_limit_refusal(app: &AppConfig, held: usize) -> Option<String> {
    let max = app.max_subscriptions_per_connection;
    (held >= max)
        .then(|| format!("subscription limit reached: at most {max} channels per connection"))
}

/// Why a client event was refused (before the rate limit).
pub fn client_event_refusal(
    app: &AppConfig,
    channel: Option<&str>,
    subscribed: bool,
    data_len: usize,
) -> Option<String> {
    if !app.client_events {
        return Some("client events are disabled for this app".into());
    }
    let Some(channel) = channel else {
        return Some("a client event needs a \"channel\"".into());
    };
    let Ok(spec) = ChannelSpec::parse(channel) else {
        return Some("invalid channel name".into());
    };
    if !spec.accepts_client_events() {
        return Some("client events are only allowed on private and presence channels".into());
    }
    if !subscribed {
        return Some("subscribe to the channel before sending client events on it".into());
    }
    if data_len > app.max_event_bytes {
        return Some(format!(
            "client event data exceeds {} bytes",
            app.max_event_bytes
        ));
    }
    None
}

/// Reads the presence member out of the app-provided `channel_data`
/// (`{"user_id": string|number, "user_info"?: any}`).
pub fn presence_member(
    channel_data: Option<&str>,
    max_info_bytes: usize,
) -> Result<Member, String> {
    #[derive(Deserialize)]
    struct ChannelData<'a> {
        #[serde(borrow)]
        user_id: Option<&'a RawValue>,
        #[serde(borrow)]
        user_info: Option<&'a RawValue>,
    }
    let text = channel_data.ok_or("presence channels need channel_data with a user_id")?;
    let data: ChannelData = serde_json::from_str(text)
        .map_err(|e| format!("channel_data is not a JSON object: {e}"))?;
    let id = data.user_id.ok_or("channel_data has no user_id")?.get();
    let is_number = serde_json::from_str::<serde_json::Number>(id).is_ok();
    let as_string = serde_json::from_str::<String>(id).ok();
    if !is_number && as_string.as_deref().is_none_or(str::is_empty) {
        return Err("user_id must be a non-empty string or a number".into());
    }
    if id.len() > MAX_USER_ID_LEN + 2 {
        return Err(format!(
            "user_id is longer than {MAX_USER_ID_LEN} characters"
        ));
    }
    let info = data.user_info.map(|i| i.get());
    if let Some(info) = info
        && info.len() > max_info_bytes
    {
        return Err(format!(
            "user_info is {} bytes; the limit is {max_info_bytes}",
            info.len()
        ));
    }
    Ok(Member::new(
        RawJson::from_validated(id),
        info.map(RawJson::from_validated),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limit_window() {
        let mut rate = RateLimit::default();
        assert!((0..10).all(|_| rate.allow(10)));
        assert!(!rate.allow(10));
    }

    #[test]
    fn client_event_rules() {
        let app = AppConfig::default();
        assert!(client_event_refusal(&app, Some("private-a"), true, 10).is_none());
        assert!(client_event_refusal(&app, Some("public"), true, 10).is_some());
        assert!(client_event_refusal(&app, Some("private-a"), false, 10).is_some());
        assert!(client_event_refusal(&app, Some("private-a"), true, 20_000).is_some());
        let off = AppConfig {
            client_events: false,
            ..AppConfig::default()
        };
        assert!(client_event_refusal(&off, Some("private-a"), true, 10).is_some());
    }

    #[test]
    fn subscription_cap() {
        let app = AppConfig {
            max_subscriptions_per_connection: 2,
            ..AppConfig::default()
        };
        assert!(subscription_limit_refusal(&app, 1).is_none());
        let refusal = subscription_limit_refusal(&app, 2).unwrap();
        assert!(
            refusal.contains("at most 2 channels per connection"),
            "{refusal}"
        );
    }

    #[test]
    fn presence_members() {
        let m = presence_member(Some(r#"{"user_id":7,"user_info":{"n":1}}"#), 100).unwrap();
        assert_eq!(&*m.key, "7");
        assert!(presence_member(Some(r#"{"user_info":{}}"#), 100).is_err());
        assert!(presence_member(Some(r#"{"user_id":""}"#), 100).is_err());
        assert!(presence_member(Some(r#"{"user_id":"a","user_info":"xxxxxxxxxx"}"#), 5).is_err());
        assert!(presence_member(None, 100).is_err());
        assert!(presence_member(Some("nope"), 100).is_err());
    }
}
