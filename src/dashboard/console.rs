//! The debug console's event log: connections, subscriptions, client
//! events and API triggers of one app, as they happen on this node.
//!
//! Zero cost when nobody watches: producers call [`Console::record`] with a
//! closure, and the closure runs only while at least one live dashboard is
//! open (one relaxed atomic load otherwise). The log is a bounded broadcast
//! channel; a viewer that falls behind is told how many entries it missed
//! instead of holding memory.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use tokio::sync::broadcast;

/// Entries buffered for the slowest viewer before it skips ahead.
const CAPACITY: usize = 1024;
/// Longest detail text kept per entry (event data is cut, not copied whole).
const MAX_DETAIL: usize = 512;

/// One line of the debug console.
#[derive(Debug, Clone)]
pub struct Entry {
    pub app: Arc<str>,
    /// Unix time in milliseconds.
    pub at_ms: u64,
    /// `connection`, `disconnection`, `subscribed`, `unsubscribed`,
    /// `client_event`, `api_message`, `member_added`, `member_removed`,
    /// `occupied`, `vacated`, ...
    pub kind: &'static str,
    pub channel: Option<String>,
    pub socket_id: Option<String>,
    pub event: Option<String>,
    /// Data or other detail, cut to 512 bytes.
    pub detail: Option<String>,
}

impl Entry {
    pub fn new(app: &str, kind: &'static str) -> Entry {
        Entry {
            app: app.into(),
            at_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            kind,
            channel: None,
            socket_id: None,
            event: None,
            detail: None,
        }
    }

    pub fn channel(mut self, channel: impl Into<String>) -> Self {
        self.channel = Some(channel.into());
        self
    }

    pub fn socket(mut self, socket: impl Into<String>) -> Self {
        self.socket_id = Some(socket.into());
        self
    }

    pub fn event(mut self, event: impl Into<String>) -> Self {
        self.event = Some(event.into());
        self
    }

    pub fn detail(mut self, detail: &str) -> Self {
        let mut end = detail.len().min(MAX_DETAIL);
        while !detail.is_char_boundary(end) {
            end -= 1;
        }
        let mut text = detail[..end].to_string();
        if end < detail.len() {
            text.push('…');
        }
        self.detail = Some(text);
        self
    }

    pub fn to_json(&self) -> Value {
        json!({
            "at": self.at_ms,
            "kind": self.kind,
            "channel": self.channel,
            "socket_id": self.socket_id,
            "event": self.event,
            "detail": self.detail,
        })
    }
}

/// The log's broadcast point.
pub struct Console {
    watchers: AtomicUsize,
    tx: broadcast::Sender<Arc<Entry>>,
}

/// A viewer's subscription; leaving (drop) stops the log when it was the
/// last one.
pub struct Watch {
    console: Arc<Console>,
    pub rx: broadcast::Receiver<Arc<Entry>>,
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.console.watchers.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Console {
    pub fn new() -> Arc<Console> {
        let (tx, _) = broadcast::channel(CAPACITY);
        Arc::new(Console {
            watchers: AtomicUsize::new(0),
            tx,
        })
    }

    /// Whether anyone watches (producers may skip work when not).
    #[inline]
    pub fn watched(&self) -> bool {
        self.watchers.load(Ordering::Relaxed) > 0
    }

    /// Records the entry `make` builds, only while someone watches.
    #[inline]
    pub fn record(&self, make: impl FnOnce() -> Entry) {
        if self.watched() {
            let _ = self.tx.send(Arc::new(make()));
        }
    }

    pub fn watch(self: &Arc<Self>) -> Watch {
        self.watchers.fetch_add(1, Ordering::AcqRel);
        Watch {
            console: self.clone(),
            rx: self.tx.subscribe(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_is_built_while_nobody_watches() {
        let console = Console::new();
        let mut built = 0;
        console.record(|| {
            built += 1;
            Entry::new("1", "connection")
        });
        assert_eq!(built, 0);
        let mut watch = console.watch();
        console.record(|| {
            built += 1;
            Entry::new("1", "connection")
        });
        assert_eq!(built, 1);
        assert_eq!(watch.rx.try_recv().unwrap().kind, "connection");
        drop(watch);
        assert!(!console.watched());
    }

    #[test]
    fn details_are_cut_on_a_char_boundary() {
        let long = "é".repeat(400);
        let entry = Entry::new("1", "client_event").detail(&long);
        let detail = entry.detail.unwrap();
        assert!(detail.len() <= MAX_DETAIL + '…'.len_utf8());
        assert!(detail.ends_with('…'));
    }
}
