//! Every open connection of one app on this node, subscribed or not, so
//! that the app can be closed as a whole (deleted → 4001, disabled → 4003)
//! when the app registry changes. Channels only know subscribers; a client
//! that connected and subscribed to nothing must be closed too.
//!
//! Sharded sets of weak references keyed by the connection's address: a
//! connect or disconnect locks one shard briefly; nothing on the fan-out
//! path touches the roster.

use std::collections::HashMap;
use std::sync::{Arc, Weak};

use parking_lot::Mutex;

use super::connection::Connection;
use super::hub::Hub;

const SHARDS: usize = 8;

type Shard = Mutex<HashMap<usize, Weak<Connection>>>;

/// The connections of one app on this node.
pub struct Roster {
    shards: Box<[Shard]>,
}

impl Default for Roster {
    fn default() -> Self {
        Roster {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }
}

fn address(conn: &Arc<Connection>) -> usize {
    Arc::as_ptr(conn) as usize
}

impl Roster {
    fn shard(&self, id: usize) -> &Shard {
        // Allocations are at least 8-aligned: skip the always-zero bits.
        &self.shards[(id >> 4) % SHARDS]
    }

    fn insert(&self, conn: &Arc<Connection>) -> usize {
        let id = address(conn);
        self.shard(id).lock().insert(id, Arc::downgrade(conn));
        id
    }

    fn remove(&self, id: usize) {
        self.shard(id).lock().remove(&id);
    }

    /// Connections currently on the roster.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Asks every connection to close with `code` (the wire's notice
    /// first); returns how many were asked. Locks one shard at a time and
    /// closes outside the lock.
    pub fn terminate_all(&self, code: u16, reason: &'static str) -> usize {
        let mut count = 0;
        for shard in self.shards.iter() {
            let conns: Vec<Arc<Connection>> =
                shard.lock().values().filter_map(Weak::upgrade).collect();
            for conn in conns {
                conn.terminate(code, reason);
                count += 1;
            }
        }
        count
    }
}

/// A connection's place on its app's roster; leaves it when dropped.
#[must_use = "the connection leaves the roster as soon as this is dropped"]
pub struct Tracked {
    hub: Arc<Hub>,
    id: usize,
}

impl Tracked {
    pub(super) fn new(hub: Arc<Hub>, conn: &Arc<Connection>) -> Self {
        let id = hub.roster.insert(conn);
        Tracked { hub, id }
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.hub.roster.remove(self.id);
    }
}
