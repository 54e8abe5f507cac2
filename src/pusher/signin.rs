//! `pusher:signin` details: the user data's `id` and `watchlist`, the
//! `pusher_internal:watchlist_events` notices and `pusher:signin_error`.

use bytes::Bytes;
use serde::Deserialize;

use super::protocol::frame;

/// Watched users one sign-in may name (Pusher's limit).
pub const MAX_WATCHLIST: usize = 100;

/// What a valid `user_data` holds.
#[derive(Debug, PartialEq, Eq)]
pub struct SignedInUser {
    pub id: String,
    pub watchlist: Vec<Box<str>>,
}

/// Reads `user_data`: an object with a non-empty string `id` and an
/// optional `watchlist` of at most [`MAX_WATCHLIST`] user ids.
pub fn parse_user_data(user_data: &str) -> Result<SignedInUser, String> {
    #[derive(Deserialize)]
    struct UserData {
        id: serde_json::Value,
        #[serde(default)]
        watchlist: Option<Vec<serde_json::Value>>,
    }
    let data: UserData = serde_json::from_str(user_data).map_err(|e| {
        format!("user_data must be a JSON object with a non-empty string \"id\" ({e})")
    })?;
    let id = match data.id {
        serde_json::Value::String(s) if !s.is_empty() => s,
        _ => return Err("user_data must be a JSON object with a non-empty string \"id\"".into()),
    };
    let list = data.watchlist.unwrap_or_default();
    if list.len() > MAX_WATCHLIST {
        return Err(format!(
            "user_data.watchlist holds {} user ids; at most {MAX_WATCHLIST} are allowed",
            list.len()
        ));
    }
    let mut watchlist: Vec<Box<str>> = Vec::with_capacity(list.len());
    for v in list {
        let id: Box<str> = match v {
            serde_json::Value::String(s) if !s.is_empty() => s.into(),
            serde_json::Value::Number(n) => n.to_string().into(),
            other => {
                return Err(format!(
                    "user_data.watchlist must hold user ids (strings), found {other}"
                ));
            }
        };
        if !watchlist.contains(&id) {
            watchlist.push(id);
        }
    }
    Ok(SignedInUser { id, watchlist })
}

/// `pusher_internal:watchlist_events` with one `online` or `offline` event.
pub fn watchlist_events(online: bool, user_ids: &[&str]) -> Bytes {
    let inner = serde_json::json!({
        "events": [{
            "name": if online { "online" } else { "offline" },
            "user_ids": user_ids,
        }]
    })
    .to_string();
    frame("pusher_internal:watchlist_events", None, &inner)
}

/// `pusher:signin_error`, shaped like the error pusher-js 8.6 emits for a
/// failed sign-in (`type`, `error`, `status`); the connection stays open.
pub fn signin_error(status: u16, message: &str) -> Bytes {
    let inner = serde_json::json!({
        "type": "AuthError",
        "error": message,
        "status": status,
    })
    .to_string();
    frame("pusher:signin_error", None, &inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_data_and_watchlists() {
        let u = parse_user_data(r#"{"id":"1","watchlist":["2",3,"2"]}"#).unwrap();
        assert_eq!(u.id, "1");
        assert_eq!(u.watchlist, vec!["2".into(), "3".into()] as Vec<Box<str>>);
        assert!(parse_user_data(r#"{"id":""}"#).is_err());
        assert!(parse_user_data(r#"{"id":5}"#).is_err());
        assert!(parse_user_data(r#"{"name":"x"}"#).is_err());
        assert!(parse_user_data("nope").is_err());
        let many: Vec<String> = (0..101).map(|i| format!("\"{i}\"")).collect();
        let err = parse_user_data(&format!(r#"{{"id":"1","watchlist":[{}]}}"#, many.join(",")))
            .unwrap_err();
        assert!(err.contains("at most 100"), "{err}");
        assert!(parse_user_data(r#"{"id":"1","watchlist":[null]}"#).is_err());
    }

    #[test]
    fn frames() {
        let f = watchlist_events(true, &["2"]);
        let v: serde_json::Value = serde_json::from_slice(&f).unwrap();
        assert_eq!(v["event"], "pusher_internal:watchlist_events");
        let data: serde_json::Value = serde_json::from_str(v["data"].as_str().unwrap()).unwrap();
        assert_eq!(data["events"][0]["name"], "online");
        assert_eq!(data["events"][0]["user_ids"][0], "2");
        let f = signin_error(401, "bad");
        let v: serde_json::Value = serde_json::from_slice(&f).unwrap();
        assert_eq!(v["event"], "pusher:signin_error");
    }
}
