//! An app's webhook targets as configured (`[[apps.webhooks]]`); sent by
//! [`crate::webhooks`].

use serde::{Deserialize, Serialize};

/// Every webhook event type, in Pusher's names (the default selection).
pub const EVENT_TYPES: [&str; 7] = [
    "channel_occupied",
    "channel_vacated",
    "member_added",
    "member_removed",
    "client_event",
    "cache_miss",
    "subscription_count",
];

/// One URL that receives some of an app's webhooks.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct WebhookTarget {
    /// `http://` or `https://` URL the events are POSTed to.
    pub url: String,
    /// Event types sent to this URL; empty means all of [`EVENT_TYPES`].
    pub event_types: Vec<String>,
    /// Only events of channels matching this filter.
    pub filter: WebhookFilter,
    /// Extra request headers (e.g. a shared token).
    pub headers: std::collections::BTreeMap<String, String>,
}

/// Which channels' events a target receives.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct WebhookFilter {
    pub channel_name_starts_with: String,
    pub channel_name_ends_with: String,
}

impl WebhookTarget {
    /// Whether this target wants events of `kind` on `channel`.
    pub fn wants(&self, kind: &str, channel: &str) -> bool {
        (self.event_types.is_empty() || self.event_types.iter().any(|t| t == kind))
            && channel.starts_with(&self.filter.channel_name_starts_with)
            && channel.ends_with(&self.filter.channel_name_ends_with)
    }

    /// Checks the target, naming the key (`prefix` is e.g. `apps[0].webhooks[1]`).
    pub fn validate(&self, prefix: &str) -> Result<(), String> {
        let url = self.url.as_str();
        if !(url.starts_with("http://") || url.starts_with("https://"))
            || url
                .parse::<hyper::Uri>()
                .map_or(true, |u| u.host().is_none())
        {
            return Err(format!(
                "{prefix}.url: must be an http:// or https:// URL with a host, got {url:?}"
            ));
        }
        for (i, t) in self.event_types.iter().enumerate() {
            if !EVENT_TYPES.contains(&t.as_str()) {
                return Err(format!(
                    "{prefix}.event_types[{i}]: unknown event type {t:?} (one of {})",
                    EVENT_TYPES.join(", ")
                ));
            }
        }
        for name in self.headers.keys() {
            if hyper::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
                return Err(format!("{prefix}.headers: {name:?} is not a header name"));
            }
        }
        for value in self.headers.values() {
            if hyper::header::HeaderValue::from_str(value).is_err() {
                return Err(format!("{prefix}.headers: {value:?} is not a header value"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_and_validation() {
        let t = WebhookTarget {
            url: "https://app.example.com/pusher/webhook".into(),
            event_types: vec!["member_added".into()],
            filter: WebhookFilter {
                channel_name_starts_with: "presence-".into(),
                channel_name_ends_with: String::new(),
            },
            ..Default::default()
        };
        assert!(t.validate("w").is_ok());
        assert!(t.wants("member_added", "presence-room"));
        assert!(!t.wants("member_added", "private-room"));
        assert!(!t.wants("member_removed", "presence-room"));
        let bad = WebhookTarget {
            event_types: vec!["channel_ocupied".into()],
            ..t.clone()
        };
        assert!(
            bad.validate("w")
                .unwrap_err()
                .starts_with("w.event_types[0]")
        );
        let bad = WebhookTarget {
            url: "ftp://x".into(),
            ..t
        };
        assert!(bad.validate("w").unwrap_err().starts_with("w.url"));
    }
}
