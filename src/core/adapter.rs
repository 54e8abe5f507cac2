//! The adapter: how an event that enters one node reaches the subscribers
//! of every node. The core defines the seam; implementations depend on the
//! core, never the reverse, so a Redis or NATS adapter plugs in without the
//! front-ends knowing.

use std::sync::Arc;

use super::event::Event;
use super::hub::Hub;

/// Cross-node fan-out. `publish` must deliver to local subscribers too
/// (exactly once) and must not wait for remote delivery.
pub trait Adapter: Send + Sync + 'static {
    /// A short name for logs and `/ready` (`local`, `redis`, ...).
    fn name(&self) -> &'static str;

    /// Delivers `event` to every subscriber of its channel in `hub`'s app,
    /// on every node.
    fn publish(&self, hub: &Arc<Hub>, event: Arc<Event>);

    /// Whether the adapter can currently reach the other nodes.
    fn healthy(&self) -> bool {
        true
    }
}

/// The single-node adapter: publishing is the local fan-out.
#[derive(Debug, Default)]
pub struct LocalAdapter;

impl Adapter for LocalAdapter {
    fn name(&self) -> &'static str {
        "local"
    }

    fn publish(&self, hub: &Arc<Hub>, event: Arc<Event>) {
        hub.publish(&event);
    }
}
