//! This node's handler-route connections of one app, by socket id, and the
//! cluster's way to reach a connection that lives on another node.
//!
//! The core has no per-connection channel (it would cost a channel per
//! connection), so operations on one socket that is not here travel as a
//! *control message* on the app's internal channel [`CONTROL_CHANNEL`]:
//! every node's [`AppSockets`] has one internal subscriber on it, so the
//! cluster adapter carries the message to every node like any event, and
//! the node that holds the socket runs it. The name starts with `#`, which
//! no client, HTTP API trigger or Laravel broadcast can use (channel names
//! are validated at every entry), so only this module publishes there.
//!
//! A control message is `{"socket": ID, "actions": [..]}`: the action
//! vocabulary of handler answers, run as if that socket's handler had
//! answered them. Arriving messages are queued (bounded: over
//! [`CONTROL_QUEUE`] they are dropped and counted) and run by one tracked
//! task, in order.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::actions::{self, Action};
use crate::core::channel::{ChannelKind, ChannelSpec};
use crate::core::connection::{Connection, Direct, DirectWrite, SocketId};
use crate::core::event::{Event, EventKind};
use crate::core::hub::Hub;
use crate::core::node::Node;
use crate::custom::conn::{Conn, Message};
use crate::custom::rooms::Rooms;
use crate::custom::wire::RAW_WIRE;

/// The app's internal channel for operations on sockets of other nodes.
pub const CONTROL_CHANNEL: &str = "#resonance-sockets";
/// Control messages waiting to run on one node (per app).
pub const CONTROL_QUEUE: usize = 4096;

/// Handler-route connections of one app on this node.
pub(crate) struct AppSockets {
    node: Arc<Node>,
    rooms: Rooms,
    conns: Mutex<HashMap<SocketId, Conn>>,
    /// Keeps the internal subscriber (and so the queue) alive.
    _control: Arc<Connection>,
}

/// Where control messages land: straight into the bounded queue, from
/// whichever thread fans them out (never blocking it).
struct ControlSink {
    queue: mpsc::Sender<Bytes>,
    hub: Arc<Hub>,
}

impl DirectWrite for ControlSink {
    fn try_write(&self, frame: &Bytes) -> Direct {
        if self.queue.try_send(frame.clone()).is_err() {
            self.hub.stats.error("handler_control_dropped");
        }
        Direct::Written
    }
}

impl AppSockets {
    /// The registry of `rooms`' app, subscribed to its control channel, with
    /// its control task spawned on `node`.
    pub(crate) fn start(node: Arc<Node>, rooms: Rooms) -> Arc<AppSockets> {
        let hub = rooms.hub().clone();
        let (tx, mut rx) = mpsc::channel::<Bytes>(CONTROL_QUEUE);
        let control = Connection::new(&RAW_WIRE, 1);
        control.set_direct(Some(Arc::new(ControlSink {
            queue: tx,
            hub: hub.clone(),
        })));
        let spec = ChannelSpec {
            name: CONTROL_CHANNEL,
            kind: ChannelKind::Public,
            cached: false,
        };
        let _ = hub.subscribe(&control, &spec, None, |_| {});
        let sockets = Arc::new(AppSockets {
            node: node.clone(),
            rooms,
            conns: Mutex::new(HashMap::new()),
            _control: control,
        });
        let weak = Arc::downgrade(&sockets);
        node.spawn(async move {
            while let Some(bytes) = rx.recv().await {
                let Some(sockets) = weak.upgrade() else {
                    return;
                };
                sockets.run_control(&bytes);
            }
        });
        sockets
    }

    pub(crate) fn hub(&self) -> &Arc<Hub> {
        self.rooms.hub()
    }

    pub(crate) fn rooms(&self) -> &Rooms {
        &self.rooms
    }

    pub(crate) fn insert(&self, conn: &Conn) {
        self.conns.lock().insert(conn.id().clone(), conn.clone());
    }

    pub(crate) fn remove(&self, id: &SocketId) {
        self.conns.lock().remove(id);
    }

    /// The connection `id` when it lives on this node.
    pub(crate) fn local(&self, id: &SocketId) -> Option<Conn> {
        self.conns.lock().get(id).cloned()
    }

    /// Whether a socket that is not here may live on another node.
    pub(crate) fn clustered(&self) -> bool {
        self.node.adapter().name() != "local"
    }

    /// Sends `message` to socket `id`, here or on another node.
    pub(crate) fn send_to(&self, id: &SocketId, message: Message) {
        if let Some(conn) = self.local(id) {
            conn.send(message);
            return;
        }
        let action = if message.is_binary() {
            use base64::Engine;
            json!({ "send_binary": base64::engine::general_purpose::STANDARD.encode(message.as_bytes()) })
        } else {
            json!({ "send": message.as_text().unwrap_or_default() })
        };
        self.remote(id, vec![action]);
    }

    /// Runs `actions` for socket `id`: here when it is here, otherwise on
    /// the node that holds it (if any).
    pub(crate) fn run_for(&self, id: &SocketId, route: &str, actions: Vec<Value>) {
        match self.local(id) {
            Some(conn) => {
                let (parsed, errors) = Action::parse_list(Some(&Value::Array(actions)));
                self.report(route, id, &errors);
                actions::run(self, &conn, route, parsed);
            }
            None => self.remote(id, actions),
        }
    }

    fn report(&self, route: &str, id: &SocketId, errors: &[String]) {
        for e in errors {
            tracing::warn!(route, socket_id = %id, error = %e, "handler action ignored");
            self.hub().stats.error("handler_bad_action");
        }
    }

    /// Publishes a control message for a socket of another node.
    fn remote(&self, id: &SocketId, actions: Vec<Value>) {
        if !self.clustered() {
            return;
        }
        let text = json!({ "socket": id.as_str(), "actions": actions }).to_string();
        let event = Event::new(
            CONTROL_CHANNEL,
            EventKind::Raw {
                payload: Bytes::from(text),
                binary: false,
            },
            None,
        );
        self.node.publish(self.hub(), event);
    }

    /// Runs a control message if its socket is here.
    fn run_control(&self, bytes: &[u8]) {
        let Ok(value) = serde_json::from_slice::<Value>(bytes) else {
            return;
        };
        let Some(id) = value
            .get("socket")
            .and_then(Value::as_str)
            .and_then(SocketId::parse)
        else {
            return;
        };
        let Some(conn) = self.local(&id) else { return };
        let (parsed, errors) = Action::parse_list(value.get("actions"));
        self.report("(socket API)", &id, &errors);
        actions::run(self, &conn, "(socket API)", parsed);
    }
}
