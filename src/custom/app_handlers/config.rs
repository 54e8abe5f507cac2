//! `[[routes]]` in the configuration file: a WebSocket route whose events
//! are handled by the app over HTTP.
//!
//! ```toml
//! [[routes]]
//! path = "/chat-rooms/{id}"                       # same patterns as the library
//! handler = "http://127.0.0.1:8000/socket/chat"   # the app's endpoint
//! rooms = ["chat-rooms.{id}"]                     # joined on connect; {param} templates
//! # app = "100000"          # whose rooms, users and HTTP API (default: the first app)
//! # events = ["connect", "message", "close"]      # which events are posted (default all)
//! # timeout = 5             # seconds per handler call
//! ```

use serde::{Deserialize, Serialize};

use crate::core::app::AppConfig;
use crate::custom::route::PathPattern;

/// One `[[routes]]` entry.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Path pattern (`/chat-rooms/{id}`, `/files/{*rest}`).
    pub path: String,
    /// The app's endpoint (`http://host:port/path`) that receives the
    /// route's events as signed `POST`s.
    pub handler: String,
    /// Rooms every connection joins on connect; `{param}` is replaced by
    /// the path parameter. Public room names only (the client chooses the
    /// parameter); the handler's answer may add private ones.
    #[serde(default)]
    pub rooms: Vec<String>,
    /// The app (by id) whose rooms, users, secret and HTTP API the route
    /// uses; the first app by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<String>,
    /// Which events are posted: any of `connect`, `message`, `close`.
    #[serde(default = "all_events")]
    pub events: Vec<String>,
    /// Seconds one handler call may take.
    #[serde(default = "default_timeout")]
    pub timeout: u64,
}

fn all_events() -> Vec<String> {
    vec!["connect".into(), "message".into(), "close".into()]
}

fn default_timeout() -> u64 {
    5
}

/// The events a route may post.
pub const EVENTS: [&str; 3] = ["connect", "message", "close"];

impl RouteConfig {
    /// Checks one entry, naming `routes[i].key` in the message.
    pub fn validate(&self, at: &str, apps: &[AppConfig]) -> Result<(), String> {
        let pattern = PathPattern::parse(&self.path).map_err(|e| format!("{at}.path: {e}"))?;
        if self.path.starts_with("/app/")
            || self.path == "/socket.io"
            || self.path.starts_with("/socket.io/")
            || self.path.starts_with("/apps/")
        {
            return Err(format!(
                "{at}.path: {:?} is taken by the Pusher, Socket.IO or HTTP API endpoints",
                self.path
            ));
        }
        crate::app_call::parse_url(&self.handler).map_err(|e| format!("{at}.handler: {e}"))?;
        for (j, room) in self.rooms.iter().enumerate() {
            check_template(room, &pattern).map_err(|e| format!("{at}.rooms[{j}]: {e}"))?;
        }
        if let Some(app) = &self.app
            && !apps.iter().any(|a| &a.id == app)
        {
            return Err(format!("{at}.app: no app with id {app:?}"));
        }
        for e in &self.events {
            if !EVENTS.contains(&e.as_str()) {
                return Err(format!(
                    "{at}.events: {e:?} is not an event; use \"connect\", \"message\" or \"close\""
                ));
            }
        }
        if self.timeout == 0 || self.timeout > 60 {
            return Err(format!("{at}.timeout: must be 1 to 60 seconds"));
        }
        Ok(())
    }

    pub(crate) fn posts(&self, event: &str) -> bool {
        self.events.iter().any(|e| e == event)
    }
}

/// A room template: `{name}` names a parameter of the path; the literal
/// text must not make it a private, presence or internal name.
fn check_template(template: &str, pattern: &PathPattern) -> Result<(), String> {
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let Some(close) = rest[open..].find('}') else {
            return Err(format!("{template:?}: '{{' without '}}'"));
        };
        let name = &rest[open + 1..open + close];
        if !pattern.has_param(name) {
            return Err(format!(
                "{template:?}: {{{name}}} is not a parameter of the path"
            ));
        }
        rest = &rest[open + close + 1..];
    }
    if template.is_empty() {
        return Err(format!("{template:?}: not a room name"));
    }
    for prefix in ["private-", "presence-", "#"] {
        if template.starts_with(prefix) {
            return Err(format!(
                "{template:?}: rooms joined from the path must be public; let the handler's connect answer add private rooms"
            ));
        }
    }
    Ok(())
}

/// Fills `{param}` in `template` from `params`.
pub(crate) fn expand(template: &str, params: &crate::custom::route::Params) -> String {
    let mut out = String::with_capacity(template.len() + 16);
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        match rest[open..].find('}') {
            Some(close) => {
                let name = &rest[open + 1..open + close];
                out.push_str(params.get(name).unwrap_or(""));
                rest = &rest[open + close + 1..];
            }
            None => {
                out.push_str(&rest[open..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(path: &str, rooms: &[&str]) -> RouteConfig {
        RouteConfig {
            path: path.into(),
            handler: "http://127.0.0.1:8000/socket".into(),
            rooms: rooms.iter().map(|r| r.to_string()).collect(),
            app: None,
            events: all_events(),
            timeout: 5,
        }
    }

    #[test]
    fn validation_names_the_key() {
        let apps = vec![AppConfig::default()];
        assert!(
            route("/chat/{id}", &["chat.{id}"])
                .validate("routes[0]", &apps)
                .is_ok()
        );
        let e = route("/chat/{id}", &["chat.{nope}"])
            .validate("routes[0]", &apps)
            .unwrap_err();
        assert!(e.starts_with("routes[0].rooms[0]"), "{e}");
        let e = route("/chat/{id}", &["private-chat.{id}"])
            .validate("routes[1]", &apps)
            .unwrap_err();
        assert!(e.contains("public"), "{e}");
        let e = route("/app/{id}", &[])
            .validate("routes[0]", &apps)
            .unwrap_err();
        assert!(e.starts_with("routes[0].path"), "{e}");
        let mut r = route("/x", &[]);
        r.handler = "https://x".into();
        assert!(r.validate("r", &apps).unwrap_err().starts_with("r.handler"));
        let mut r = route("/x", &[]);
        r.events = vec!["open".into()];
        assert!(r.validate("r", &apps).unwrap_err().starts_with("r.events"));
        let mut r = route("/x", &[]);
        r.app = Some("nope".into());
        assert!(r.validate("r", &apps).unwrap_err().starts_with("r.app"));
    }

    #[test]
    fn templates_expand() {
        let pattern = PathPattern::parse("/chat-rooms/{id}/{sub}").unwrap();
        let params = pattern.matches("/chat-rooms/7/a").unwrap();
        assert_eq!(expand("chat-rooms.{id}", &params), "chat-rooms.7");
        assert_eq!(expand("{id}-{sub}", &params), "7-a");
        assert_eq!(expand("lobby", &params), "lobby");
    }
}
