//! Channel names and what their prefixes mean.
//!
//! The kind of a channel is decided by its name alone (reference §2), so it is
//! parsed once at subscribe/publish time and never stored apart from the name.

use std::fmt;

/// Longest channel name Pusher accepts.
pub const MAX_CHANNEL_NAME_LEN: usize = 164;

/// Prefix of the per-user channel that only a signed-in user may join.
pub const SERVER_TO_USER_PREFIX: &str = "#server-to-user-";

/// How a channel is authorised and what it supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelKind {
    Public,
    Private,
    PrivateEncrypted,
    Presence,
    /// `#server-to-user-{id}`: joined only by the connection signed in as `id`.
    ServerToUser,
}

/// A validated channel name with its kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChannelSpec<'a> {
    pub name: &'a str,
    pub kind: ChannelKind,
    /// `cache-` variants replay their last event to new subscribers.
    pub cached: bool,
}

/// Why a channel name was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChannelNameError {
    Empty,
    TooLong(usize),
    BadCharacter(char),
}

impl fmt::Display for ChannelNameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChannelNameError::Empty => write!(f, "channel name is empty"),
            ChannelNameError::TooLong(n) => write!(
                f,
                "channel name is {n} characters long; the limit is {MAX_CHANNEL_NAME_LEN}"
            ),
            ChannelNameError::BadCharacter(c) => write!(
                f,
                "channel name contains {c:?}; allowed are A-Z a-z 0-9 and _ - = @ , . ;"
            ),
        }
    }
}

impl<'a> ChannelSpec<'a> {
    /// Validates `name` and derives its kind from the prefix.
    pub fn parse(name: &'a str) -> Result<Self, ChannelNameError> {
        if name.is_empty() {
            return Err(ChannelNameError::Empty);
        }
        if name.len() > MAX_CHANNEL_NAME_LEN {
            return Err(ChannelNameError::TooLong(name.len()));
        }
        let body = name.strip_prefix(SERVER_TO_USER_PREFIX).unwrap_or(name);
        if let Some(c) = body.chars().find(|&c| !allowed_char(c)) {
            return Err(ChannelNameError::BadCharacter(c));
        }
        if body.len() != name.len() {
            if body.is_empty() {
                return Err(ChannelNameError::Empty);
            }
            return Ok(ChannelSpec {
                name,
                kind: ChannelKind::ServerToUser,
                cached: false,
            });
        }
        const KINDS: [(&str, ChannelKind, bool); 7] = [
            (
                "private-encrypted-cache-",
                ChannelKind::PrivateEncrypted,
                true,
            ),
            ("private-encrypted-", ChannelKind::PrivateEncrypted, false),
            ("private-cache-", ChannelKind::Private, true),
            ("private-", ChannelKind::Private, false),
            ("presence-cache-", ChannelKind::Presence, true),
            ("presence-", ChannelKind::Presence, false),
            ("cache-", ChannelKind::Public, true),
        ];
        let (kind, cached) = KINDS
            .iter()
            .find(|(prefix, _, _)| name.starts_with(prefix))
            .map_or((ChannelKind::Public, false), |&(_, kind, cached)| {
                (kind, cached)
            });
        Ok(ChannelSpec { name, kind, cached })
    }

    /// Private, encrypted and presence channels need a signature.
    pub fn needs_auth(&self) -> bool {
        matches!(
            self.kind,
            ChannelKind::Private | ChannelKind::PrivateEncrypted | ChannelKind::Presence
        )
    }

    pub fn is_presence(&self) -> bool {
        self.kind == ChannelKind::Presence
    }

    /// Client events are relayed only on private and presence channels.
    pub fn accepts_client_events(&self) -> bool {
        matches!(self.kind, ChannelKind::Private | ChannelKind::Presence)
    }

    /// The user a `#server-to-user-{id}` channel belongs to.
    pub fn server_to_user_id(&self) -> Option<&'a str> {
        self.name.strip_prefix(SERVER_TO_USER_PREFIX)
    }
}

fn allowed_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '=' | '@' | ',' | '.' | ';')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(name: &str) -> (ChannelKind, bool) {
        let spec = ChannelSpec::parse(name).unwrap();
        (spec.kind, spec.cached)
    }

    #[test]
    fn kinds_by_prefix() {
        assert_eq!(kind("orders"), (ChannelKind::Public, false));
        assert_eq!(kind("private-orders.1"), (ChannelKind::Private, false));
        assert_eq!(
            kind("private-encrypted-x"),
            (ChannelKind::PrivateEncrypted, false)
        );
        assert_eq!(kind("presence-room"), (ChannelKind::Presence, false));
        assert_eq!(kind("cache-x"), (ChannelKind::Public, true));
        assert_eq!(kind("private-cache-x"), (ChannelKind::Private, true));
        assert_eq!(
            kind("private-encrypted-cache-x"),
            (ChannelKind::PrivateEncrypted, true)
        );
        assert_eq!(kind("presence-cache-x"), (ChannelKind::Presence, true));
        assert_eq!(
            kind("#server-to-user-42"),
            (ChannelKind::ServerToUser, false)
        );
        assert_eq!(
            ChannelSpec::parse("#server-to-user-42")
                .unwrap()
                .server_to_user_id(),
            Some("42")
        );
    }

    #[test]
    fn refuses_bad_names() {
        assert_eq!(ChannelSpec::parse(""), Err(ChannelNameError::Empty));
        assert_eq!(
            ChannelSpec::parse("bad channel"),
            Err(ChannelNameError::BadCharacter(' '))
        );
        assert_eq!(
            ChannelSpec::parse("#other"),
            Err(ChannelNameError::BadCharacter('#'))
        );
        assert_eq!(
            ChannelSpec::parse("#server-to-user-"),
            Err(ChannelNameError::Empty)
        );
        let long = "a".repeat(165);
        assert_eq!(
            ChannelSpec::parse(&long),
            Err(ChannelNameError::TooLong(165))
        );
        assert!(ChannelSpec::parse(&"a".repeat(164)).is_ok());
        assert!(ChannelSpec::parse("App.Models.User.1=@,;_-").is_ok());
    }

    #[test]
    fn client_event_rules() {
        let ok = |n| ChannelSpec::parse(n).unwrap().accepts_client_events();
        assert!(ok("private-a"));
        assert!(ok("presence-a"));
        assert!(!ok("public"));
        assert!(!ok("private-encrypted-a"));
    }
}
