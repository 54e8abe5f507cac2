//! The node: every app's hub on this process, found by id or key, and the
//! adapter that carries events to other nodes.

use std::hash::BuildHasher;
use std::sync::{Arc, OnceLock, Weak};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::adapter::Adapter;
use super::app::AppConfig;
use super::event::Event;
use super::happenings::Happenings;
use super::hub::Hub;
pub use super::registry::AppsChange;
use super::registry::Registry;
use super::settle::{self, HoldQueue};
use arc_swap::ArcSwap;

/// Shared state of a running server, independent of any wire protocol.
pub struct Node {
    /// The apps served now: swapped whole by [`Node::apply_apps`], read
    /// without a lock (see [`super::registry`]).
    registry: ArcSwap<Registry>,
    /// Serialises registry changes (a reload and a database poll at once).
    changing: parking_lot::Mutex<()>,
    /// Health of outside dependencies other than the adapter (the apps
    /// database, ...), reported by `/ready` and `/metrics`.
    dependencies: parking_lot::Mutex<Vec<(&'static str, bool)>>,
    adapter: Arc<dyn Adapter>,
    /// Ordered fan-out lanes for requests that must not wait on a fan-out
    /// (see [`Node::publish_queued`]); started by the server.
    lanes: OnceLock<Lanes>,
    /// Background tasks (lanes, sweeper, ingestion, adapter tasks): spawned
    /// through [`Node::spawn`], cancelled and awaited by [`Node::stop_tasks`].
    tasks: TaskTracker,
    stop: CancellationToken,
    /// The node's happenings stream (see [`super::happenings`]).
    happenings: Happenings,
    /// Held departures, waited out by a task started with the lanes.
    holds: HoldQueue,
    holds_rx: parking_lot::Mutex<Option<mpsc::Receiver<(tokio::time::Instant, settle::Held)>>>,
}

/// What a lane does with an event.
enum LaneItem {
    /// Entered on this node: through the adapter (this node and the others).
    Publish(Arc<Hub>, Arc<Event>),
    /// Came from elsewhere (another node, Laravel's Redis that every node
    /// consumes itself): this node's subscribers only, never re-published.
    Local(Arc<Hub>, Arc<Event>),
}

impl LaneItem {
    fn channel(&self) -> &str {
        match self {
            LaneItem::Publish(_, e) => &e.channel,
            LaneItem::Local(_, e) => &e.channel,
        }
    }
}

/// Fan-out lanes: a channel always maps to the same lane, so its events
/// keep their order, while different channels fan out in parallel.
struct Lanes {
    senders: Vec<mpsc::Sender<LaneItem>>,
    hasher: std::collections::hash_map::RandomState,
}

/// Events a lane may hold before a publisher has to wait (backpressure
/// instead of an unbounded queue).
const LANE_CAPACITY: usize = 8192;

/// How long a lane fans out before it lets other tasks on its worker run.
const YIELD_AFTER: std::time::Duration = std::time::Duration::from_micros(500);

impl Node {
    /// Builds the hubs. Duplicate ids or keys are refused by config
    /// validation before this is called.
    /// Builds the node and attaches the adapter to it.
    pub fn new(apps: Vec<AppConfig>, adapter: Arc<dyn Adapter>) -> Arc<Self> {
        let happenings = Happenings::new();
        let (holds, holds_rx) = HoldQueue::new();
        let hubs: Vec<Arc<Hub>> = apps
            .into_iter()
            .map(|a| {
                Arc::new(Hub::with_happenings(
                    a,
                    adapter.clone(),
                    happenings.clone(),
                    Some(holds.clone()),
                ))
            })
            .collect();
        let node = Arc::new(Node {
            registry: ArcSwap::from_pointee(Registry::new(hubs)),
            changing: parking_lot::Mutex::new(()),
            dependencies: parking_lot::Mutex::new(Vec::new()),
            adapter,
            lanes: OnceLock::new(),
            tasks: TaskTracker::new(),
            stop: CancellationToken::new(),
            happenings,
            holds,
            holds_rx: parking_lot::Mutex::new(Some(holds_rx)),
        });
        node.adapter.attach(Arc::downgrade(&node));
        node
    }

    /// The hub of app `id` (disabled apps included: check `app.enabled`).
    pub fn by_id(&self, id: &str) -> Option<Arc<Hub>> {
        self.registry.load().by_id(id).cloned()
    }

    /// The hub of the app whose public key is `key`.
    pub fn by_key(&self, key: &str) -> Option<Arc<Hub>> {
        self.registry.load().by_key(key).cloned()
    }

    /// Every app's hub, in configuration order (a snapshot: a reload may
    /// replace the list right after).
    pub fn hubs(&self) -> Arc<[Arc<Hub>]> {
        self.registry.load().hubs().clone()
    }

    /// Replaces the app set with `apps` (ids and keys unique, validated by
    /// the caller): new apps get a hub, changed apps keep theirs with the
    /// new settings (new work sees them), apps no longer listed leave the
    /// registry and their connections are closed with 4001, apps that are
    /// now disabled have theirs closed with 4003. Untouched apps and their
    /// connections are not disturbed. Lookups never wait for this.
    pub fn apply_apps(&self, apps: Vec<AppConfig>) -> AppsChange {
        let _one_at_a_time = self.changing.lock();
        let old = self.registry.load_full();
        let (registry, change) = old.next(apps, &self.adapter);
        self.registry.store(Arc::new(registry));
        for hub in &change.removed {
            hub.roster
                .terminate_all(4001, "application does not exist any more");
        }
        for hub in &change.disabled {
            hub.roster.terminate_all(4003, "application is disabled");
        }
        change
    }

    /// Records the health of an outside dependency (`/ready`, `/metrics`).
    pub fn set_dependency(&self, name: &'static str, healthy: bool) {
        let mut deps = self.dependencies.lock();
        match deps.iter_mut().find(|(n, _)| *n == name) {
            Some(entry) => entry.1 = healthy,
            None => deps.push((name, healthy)),
        }
    }

    /// Outside dependencies and whether each is healthy.
    pub fn dependencies(&self) -> Vec<(&'static str, bool)> {
        self.dependencies.lock().clone()
    }

    pub fn adapter(&self) -> &Arc<dyn Adapter> {
        &self.adapter
    }

    /// The node's happenings stream: subscribe to hear what happens on the
    /// server (see [`super::happenings`]).
    pub fn happenings(&self) -> &Happenings {
        &self.happenings
    }

    /// The node's hold queue (for adapters that hold departures).
    pub fn holds(&self) -> &HoldQueue {
        &self.holds
    }

    /// Starts the task that ends departures' holds (called with the lanes;
    /// idempotent).
    fn start_holds(self: &Arc<Self>) {
        let Some(rx) = self.holds_rx.lock().take() else {
            return;
        };
        let node = Arc::downgrade(self);
        self.spawn(settle::run_holds(rx, move |(app, subject, generation)| {
            if let Some(node) = node.upgrade()
                && let Some(hub) = node.by_id(&app)
            {
                node.adapter.hold_expired(&hub, subject, generation);
            }
        }));
    }

    /// Publishes through the adapter (all nodes, this one included).
    pub fn publish(&self, hub: &Arc<Hub>, event: Event) {
        self.adapter.publish(hub, Arc::new(event));
    }

    /// Spawns a background task that lives until [`Node::stop_tasks`]:
    /// tracked, and dropped at its next await once stopping begins.
    pub fn spawn<F>(&self, task: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        let stop = self.stop.clone();
        self.tasks.spawn(async move {
            tokio::select! {
                () = stop.cancelled() => {}
                () = task => {}
            }
        });
    }

    /// Background tasks still running.
    pub fn task_count(&self) -> usize {
        self.tasks.len()
    }

    /// Cancels every background task and waits for them, at most `grace`.
    /// Returns how many were still running when the wait gave up.
    pub async fn stop_tasks(&self, grace: std::time::Duration) -> usize {
        self.stop.cancel();
        self.tasks.close();
        match tokio::time::timeout(grace, self.tasks.wait()).await {
            Ok(()) => 0,
            Err(_) => self.tasks.len(),
        }
    }

    /// Starts `count` fan-out lanes (one task each). Call once, inside the
    /// runtime.
    pub fn start_lanes(self: &Arc<Self>, count: usize) {
        self.start_holds();
        let mut senders = Vec::with_capacity(count);
        for _ in 0..count.max(1) {
            let (tx, mut rx) = mpsc::channel::<LaneItem>(LANE_CAPACITY);
            let node: Weak<Node> = Arc::downgrade(self);
            self.spawn(async move {
                let mut batch = Vec::with_capacity(64);
                while rx.recv_many(&mut batch, 64).await > 0 {
                    let Some(node) = node.upgrade() else { return };
                    let mut since_yield = std::time::Instant::now();
                    for item in batch.drain(..) {
                        node.run_item(item);
                        // A big channel's fan-outs are long and never wait:
                        // give the worker back now and then, or the tasks
                        // queued behind this one on it (the ingestion loop,
                        // another lane, a socket) stall until the batch ends.
                        if since_yield.elapsed() > YIELD_AFTER {
                            tokio::task::yield_now().await;
                            since_yield = std::time::Instant::now();
                        }
                    }
                }
            });
            senders.push(tx);
        }
        let _ = self.lanes.set(Lanes {
            senders,
            hasher: Default::default(),
        });
    }

    fn run_item(&self, item: LaneItem) {
        match item {
            LaneItem::Publish(hub, event) => self.adapter.publish(&hub, event),
            LaneItem::Local(hub, event) => {
                hub.publish(&event);
            }
        }
    }

    /// The lane `channel`'s events go through (`None` before the lanes are
    /// started). For tests and diagnostics.
    pub fn lane_of(&self, channel: &str) -> Option<usize> {
        let lanes = self.lanes.get()?;
        Some((lanes.hasher.hash_one(channel) as usize) % lanes.senders.len())
    }

    /// Queues `item` on its channel's lane; waits only while the lane is
    /// full. Without lanes (or once they are gone) it runs inline.
    async fn enqueue(&self, item: LaneItem) {
        let Some(lanes) = self.lanes.get() else {
            return self.run_item(item);
        };
        let lane = self.lane_of(item.channel()).unwrap_or(0);
        if let Err(mpsc::error::SendError(item)) = lanes.senders[lane].send(item).await {
            // The lane task is gone (shutting down): deliver inline.
            self.run_item(item);
        }
    }

    /// Publishes without waiting for the fan-out: the event is queued on its
    /// channel's lane (in order) and fanned out by the lane's task. Waits
    /// only while the lane is full. Without lanes it publishes inline.
    pub async fn publish_queued(&self, hub: &Arc<Hub>, event: Event) {
        self.enqueue(LaneItem::Publish(hub.clone(), Arc::new(event)))
            .await;
    }

    /// Delivers an event that came from elsewhere (another node, Laravel's
    /// Redis) to this node's subscribers only, on its channel's lane: in
    /// order with the channel's other events, without holding up the
    /// caller's other channels behind a big fan-out.
    pub async fn deliver_queued(&self, hub: &Arc<Hub>, event: Arc<Event>) {
        self.enqueue(LaneItem::Local(hub.clone(), event)).await;
    }
}
