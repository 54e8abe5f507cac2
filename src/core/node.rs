//! The node: every app's hub on this process, found by id or key, and the
//! adapter that carries events to other nodes.

use std::collections::HashMap;
use std::sync::Arc;

use super::adapter::Adapter;
use super::app::AppConfig;
use super::event::Event;
use super::hub::Hub;

/// Shared state of a running server, independent of any wire protocol.
pub struct Node {
    hubs: Vec<Arc<Hub>>,
    by_id: HashMap<String, usize>,
    by_key: HashMap<String, usize>,
    adapter: Arc<dyn Adapter>,
}

impl Node {
    /// Builds the hubs. Duplicate ids or keys are refused by config
    /// validation before this is called.
    /// Builds the node and attaches the adapter to it.
    pub fn new(apps: Vec<AppConfig>, adapter: Arc<dyn Adapter>) -> Arc<Self> {
        let hubs: Vec<Arc<Hub>> = apps
            .into_iter()
            .map(|a| Arc::new(Hub::new(a, adapter.clone())))
            .collect();
        let by_id = hubs
            .iter()
            .enumerate()
            .map(|(i, h)| (h.app.id.clone(), i))
            .collect();
        let by_key = hubs
            .iter()
            .enumerate()
            .map(|(i, h)| (h.app.key.clone(), i))
            .collect();
        let node = Arc::new(Node {
            hubs,
            by_id,
            by_key,
            adapter,
        });
        node.adapter.attach(Arc::downgrade(&node));
        node
    }

    pub fn by_id(&self, id: &str) -> Option<&Arc<Hub>> {
        self.by_id.get(id).map(|&i| &self.hubs[i])
    }

    pub fn by_key(&self, key: &str) -> Option<&Arc<Hub>> {
        self.by_key.get(key).map(|&i| &self.hubs[i])
    }

    pub fn hubs(&self) -> &[Arc<Hub>] {
        &self.hubs
    }

    pub fn adapter(&self) -> &Arc<dyn Adapter> {
        &self.adapter
    }

    /// Publishes through the adapter (all nodes, this one included).
    pub fn publish(&self, hub: &Arc<Hub>, event: Event) {
        self.adapter.publish(hub, Arc::new(event));
    }
}
