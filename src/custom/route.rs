//! Path patterns with `{param}` segments, and the per-route options a
//! WebSocket route carries (origins, subprotocols, authenticator, default
//! room, limits).
//!
//! A pattern is split into segments once, when the route is added, so
//! matching a request is a walk over two short slices with no allocation
//! unless it matches. Segments are compared literally; `{name}` captures one
//! non-empty segment (percent-decoded) and a final `{*name}` captures the
//! rest of the path, slashes included, possibly empty.

use std::sync::Arc;

use percent_encoding::percent_decode_str;

use super::auth::Authenticator;
use super::handler::Handler;
use super::rooms::RoomAuthorizer;
use crate::core::app::wildcard_match;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(Box<str>),
    Param(Box<str>),
    Rest(Box<str>),
}

/// A parsed path pattern such as `/chat-rooms/{id}` or `/files/{*path}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathPattern {
    text: Box<str>,
    segments: Vec<Segment>,
}

/// Values captured by a pattern, in pattern order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params(Vec<(Box<str>, String)>);

impl Params {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| &**k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (&**k, v.as_str()))
    }
}

impl PathPattern {
    /// Parses `pattern`; a malformed one is a programming error in the
    /// embedding program, reported with the pattern and what is wrong.
    pub fn parse(pattern: &str) -> Result<Self, String> {
        let Some(rest) = pattern.strip_prefix('/') else {
            return Err(format!("route {pattern:?}: a path must start with '/'"));
        };
        let mut segments = Vec::new();
        let parts: Vec<&str> = if rest.is_empty() {
            Vec::new()
        } else {
            rest.split('/').collect()
        };
        for (i, part) in parts.iter().enumerate() {
            let segment = match part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
                Some(name) if name.starts_with('*') => {
                    if i + 1 != parts.len() {
                        return Err(format!(
                            "route {pattern:?}: {{*{}}} must be the last segment",
                            &name[1..]
                        ));
                    }
                    Segment::Rest(name[1..].into())
                }
                Some(name) => Segment::Param(name.into()),
                None if part.contains(['{', '}']) => {
                    return Err(format!(
                        "route {pattern:?}: a parameter must be a whole segment, like /{{id}}"
                    ));
                }
                None => Segment::Literal((*part).into()),
            };
            if let Segment::Param(name) | Segment::Rest(name) = &segment {
                if name.is_empty() {
                    return Err(format!("route {pattern:?}: a parameter needs a name"));
                }
                let taken = segments
                    .iter()
                    .any(|s| matches!(s, Segment::Param(n) | Segment::Rest(n) if n == name));
                if taken {
                    return Err(format!(
                        "route {pattern:?}: parameter {name:?} appears twice"
                    ));
                }
            }
            segments.push(segment);
        }
        Ok(PathPattern {
            text: pattern.into(),
            segments,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether the pattern names parameter `name`.
    pub fn has_param(&self, name: &str) -> bool {
        self.segments
            .iter()
            .any(|s| matches!(s, Segment::Param(n) | Segment::Rest(n) if &**n == name))
    }

    /// The captured parameters when `path` matches.
    pub fn matches(&self, path: &str) -> Option<Params> {
        let rest = path.strip_prefix('/')?;
        let mut parts = if rest.is_empty() {
            None
        } else {
            Some(rest.split('/'))
        };
        let mut params = Vec::new();
        let mut remaining = rest;
        for segment in &self.segments {
            if let Segment::Rest(name) = segment {
                params.push((name.clone(), decode(remaining)?));
                return Some(Params(params));
            }
            let part = parts.as_mut()?.next()?;
            remaining = remaining.get(part.len() + 1..).unwrap_or("");
            match segment {
                Segment::Literal(lit) if **lit == *part => {}
                Segment::Param(name) if !part.is_empty() => {
                    params.push((name.clone(), decode(part)?));
                }
                _ => return None,
            }
        }
        match parts.and_then(|mut p| p.next()) {
            None => Some(Params(params)),
            Some(_) => None,
        }
    }
}

/// Percent-decodes a captured segment; invalid UTF-8 does not match.
fn decode(s: &str) -> Option<String> {
    percent_decode_str(s)
        .decode_utf8()
        .ok()
        .map(|c| c.into_owned())
}

/// A WebSocket route: its handler and options. Build it with
/// [`Route::callbacks`] or [`Route::task`], then chain options.
#[derive(Clone)]
pub struct Route {
    pub(crate) handler: Handler,
    pub(crate) origins: Option<Vec<String>>,
    pub(crate) protocols: Vec<String>,
    pub(crate) authenticator: Option<Arc<dyn Authenticator>>,
    pub(crate) room_param: Option<String>,
    pub(crate) authorize_rooms: Option<RoomAuthorizer>,
    pub(crate) app_id: Option<String>,
    pub(crate) max_message_bytes: Option<usize>,
    pub(crate) frame_size: Option<usize>,
    /// Set on `[[routes]]` entries: the app handles the events over HTTP.
    pub(crate) app_handler: Option<Arc<super::app_handlers::session::HandlerRoute>>,
}

impl Route {
    pub(crate) fn new(handler: Handler) -> Self {
        Route {
            handler,
            origins: None,
            protocols: Vec::new(),
            authenticator: None,
            room_param: None,
            authorize_rooms: None,
            app_id: None,
            max_message_bytes: None,
            frame_size: None,
            app_handler: None,
        }
    }

    /// Browser origins allowed to open this route (`*` wildcards, as in
    /// `allowed_origins`). Without this the app's `allowed_origins` apply.
    /// A request without `Origin` (not a browser) is always allowed.
    pub fn origins<S: Into<String>>(mut self, origins: impl IntoIterator<Item = S>) -> Self {
        self.origins = Some(origins.into_iter().map(Into::into).collect());
        self
    }

    /// Subprotocols this route speaks, preferred first. The first one that
    /// the client also offers in `Sec-WebSocket-Protocol` is selected and
    /// echoed; when none matches the upgrade proceeds without one (RFC 6455
    /// §4.2.2 lets the client decide whether to go on).
    pub fn protocols<S: Into<String>>(mut self, protocols: impl IntoIterator<Item = S>) -> Self {
        self.protocols = protocols.into_iter().map(Into::into).collect();
        self
    }

    /// Who the connection belongs to, decided from the upgrade request
    /// before the 101 is sent (a refusal is a plain HTTP 401/403).
    pub fn authenticator(mut self, auth: impl Authenticator) -> Self {
        self.authenticator = Some(Arc::new(auth));
        self
    }

    /// Joins every connection to the room named by this path parameter
    /// (`/chat/{room}` with `room_param("room")`) before the handler runs.
    /// The name comes from the client: a private one needs
    /// [`authorize_rooms`](Route::authorize_rooms), `presence-*` and
    /// `#...` are refused (HTTP 403 before the upgrade).
    pub fn room_param(mut self, name: impl Into<String>) -> Self {
        self.room_param = Some(name.into());
        self
    }

    /// Lets this route's connections join private rooms (`private-*`,
    /// `private-encrypted-*`: where Laravel broadcasts per-user data) when
    /// `allow(user, room)` is true; `user` is what the
    /// [`authenticator`](Route::authenticator) returned. Without it such
    /// rooms are refused: from `room_param` with a 403 before the upgrade,
    /// from [`Conn::join`](super::Conn::join) with an error. `presence-*`
    /// and `#`-prefixed rooms are refused whatever it says.
    ///
    /// ```
    /// # use resonance::custom::Route;
    /// let route = Route::echo()
    ///     .room_param("room")
    ///     .authorize_rooms(|user, room| {
    ///         // Only user 7 may join private-App.Models.User.7.
    ///         user.is_some_and(|u| room == format!("private-App.Models.User.{u}"))
    ///     });
    /// ```
    pub fn authorize_rooms(
        mut self,
        allow: impl Fn(Option<&str>, &str) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.authorize_rooms = Some(Arc::new(allow));
        self
    }

    /// The app whose hub holds this route's rooms and users (by id); the
    /// first configured app by default. HTTP API calls for that app id
    /// reach the route's connections.
    pub fn app(mut self, id: impl Into<String>) -> Self {
        self.app_id = Some(id.into());
        self
    }

    /// Largest message accepted from a client (over: close 1009); the
    /// server's `max_message_bytes` by default.
    pub fn max_message_bytes(mut self, n: usize) -> Self {
        self.max_message_bytes = Some(n);
        self
    }

    /// Outgoing messages longer than `n` bytes are sent as a fragmented
    /// message of `n`-byte frames (4 MiB by default).
    pub fn frame_size(mut self, n: usize) -> Self {
        self.frame_size = Some(n.max(1));
        self
    }

    /// Whether a browser `Origin` may open this route, given the app's list.
    pub(crate) fn origin_allowed(&self, origin: Option<&str>, app_origins: &[String]) -> bool {
        let Some(origin) = origin else { return true };
        self.origins
            .as_deref()
            .unwrap_or(app_origins)
            .iter()
            .any(|p| wildcard_match(p.as_bytes(), origin.as_bytes()))
    }

    /// The subprotocol to select for a client's `Sec-WebSocket-Protocol`
    /// header values (comma-separated lists, possibly several headers).
    pub(crate) fn select_protocol(&self, offered: &[&str]) -> Option<&str> {
        self.protocols.iter().map(String::as_str).find(|wanted| {
            offered
                .iter()
                .flat_map(|v| v.split(','))
                .any(|p| p.trim() == *wanted)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> PathPattern {
        PathPattern::parse(s).unwrap()
    }

    #[test]
    fn literal_and_params() {
        assert!(p("/").matches("/").is_some());
        assert!(p("/").matches("/x").is_none());
        let chat = p("/chat-rooms/{id}");
        assert_eq!(
            chat.matches("/chat-rooms/42").unwrap().get("id"),
            Some("42")
        );
        assert!(
            chat.matches("/chat-rooms/").is_none(),
            "a param is non-empty"
        );
        assert!(chat.matches("/chat-rooms/42/x").is_none());
        assert!(chat.matches("/chat-room/42").is_none());
        assert_eq!(
            chat.matches("/chat-rooms/a%20b").unwrap().get("id"),
            Some("a b")
        );
        let two = p("/a/{x}/b/{y}");
        let m = two.matches("/a/1/b/2").unwrap();
        assert_eq!((m.get("x"), m.get("y")), (Some("1"), Some("2")));
        assert!(two.has_param("y") && !two.has_param("z"));
    }

    #[test]
    fn rest_param() {
        let any = p("/{*path}");
        assert_eq!(any.matches("/").unwrap().get("path"), Some(""));
        assert_eq!(any.matches("/a/b/c").unwrap().get("path"), Some("a/b/c"));
        let files = p("/files/{*rest}");
        assert_eq!(
            files.matches("/files/x/y").unwrap().get("rest"),
            Some("x/y")
        );
        assert!(files.matches("/other/x").is_none());
    }

    #[test]
    fn bad_patterns_are_refused() {
        assert!(PathPattern::parse("chat").is_err());
        assert!(PathPattern::parse("/a{b}").is_err());
        assert!(PathPattern::parse("/{}").is_err());
        assert!(PathPattern::parse("/{*a}/b").is_err());
        assert!(PathPattern::parse("/{a}/{a}").is_err());
    }

    #[test]
    fn protocol_selection_prefers_the_route_order() {
        let route = Route::new(Handler::echo()).protocols(["v2", "v1"]);
        let offered = ["v1, v2"];
        assert_eq!(route.select_protocol(&offered), Some("v2"));
        let offered = ["x", "v1"];
        assert_eq!(route.select_protocol(&offered), Some("v1"));
        let offered = ["x"];
        assert_eq!(route.select_protocol(&offered), None);
    }

    #[test]
    fn origins_per_route() {
        let route = Route::new(Handler::echo()).origins(["https://*.example.com"]);
        let app = vec!["*".to_string()];
        assert!(route.origin_allowed(None, &app));
        assert!(route.origin_allowed(Some("https://a.example.com"), &app));
        assert!(!route.origin_allowed(Some("https://evil.test"), &app));
        let open = Route::new(Handler::echo());
        assert!(open.origin_allowed(Some("https://evil.test"), &app));
        assert!(!open.origin_allowed(Some("https://evil.test"), &["https://x".into()]));
    }
}
