//! The set of apps a node serves, as one immutable value: the node swaps in
//! a whole new [`Registry`] when apps are added, changed or removed (a
//! reload, the apps database), so a lookup on connect or on an API call is
//! an atomic load and a hash lookup — never a lock, never a wait on a
//! database.

use std::collections::HashMap;
use std::sync::Arc;

use super::adapter::Adapter;
use super::app::AppConfig;
use super::hub::Hub;

/// Apps by id and by key. Hubs are shared with the previous registry when
/// their app is still there, so connections and channels survive a change.
pub struct Registry {
    hubs: Arc<[Arc<Hub>]>,
    by_id: HashMap<Box<str>, Arc<Hub>>,
    by_key: HashMap<Box<str>, Arc<Hub>>,
}

/// What [`super::node::Node::apply_apps`] changed.
#[derive(Default)]
pub struct AppsChange {
    /// New apps (a new hub each).
    pub added: Vec<Arc<Hub>>,
    /// Apps whose settings changed (same hub, new settings), with the
    /// settings they had before.
    pub changed: Vec<(Arc<Hub>, AppConfig)>,
    /// Apps no longer served (their connections were closed with 4001).
    pub removed: Vec<Arc<Hub>>,
    /// Apps disabled by this change (their connections were closed with
    /// 4003); also listed in `changed`.
    pub disabled: Vec<Arc<Hub>>,
}

impl AppsChange {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.changed.is_empty() && self.removed.is_empty()
    }
}

impl std::fmt::Display for AppsChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids = |hubs: &mut dyn Iterator<Item = &Arc<Hub>>| {
            hubs.map(|h| h.app.id.clone()).collect::<Vec<_>>().join(",")
        };
        write!(
            f,
            "added [{}], changed [{}], removed [{}]",
            ids(&mut self.added.iter()),
            ids(&mut self.changed.iter().map(|(h, _)| h)),
            ids(&mut self.removed.iter())
        )
    }
}

impl Registry {
    pub fn new(hubs: Vec<Arc<Hub>>) -> Self {
        let by_id = hubs
            .iter()
            .map(|h| (h.app.id.as_str().into(), h.clone()))
            .collect();
        let by_key = hubs
            .iter()
            .map(|h| (h.app.key.as_str().into(), h.clone()))
            .collect();
        Registry {
            hubs: hubs.into(),
            by_id,
            by_key,
        }
    }

    pub fn by_id(&self, id: &str) -> Option<&Arc<Hub>> {
        self.by_id.get(id)
    }

    pub fn by_key(&self, key: &str) -> Option<&Arc<Hub>> {
        self.by_key.get(key)
    }

    pub fn hubs(&self) -> &Arc<[Arc<Hub>]> {
        &self.hubs
    }

    /// The registry serving `apps`, reusing this one's hubs by app id, and
    /// what changed. `apps` must have unique ids and keys.
    pub fn next(&self, apps: Vec<AppConfig>, adapter: &Arc<dyn Adapter>) -> (Registry, AppsChange) {
        let mut change = AppsChange::default();
        let mut hubs = Vec::with_capacity(apps.len());
        let mut kept = std::collections::HashSet::new();
        for app in apps {
            match self.by_id.get(app.id.as_str()) {
                Some(hub) => {
                    kept.insert(app.id.clone());
                    if *hub.app != app {
                        let before: AppConfig = (*hub.app).clone();
                        let now_disabled = before.enabled && !app.enabled;
                        hub.app.store(app);
                        if now_disabled {
                            change.disabled.push(hub.clone());
                        }
                        change.changed.push((hub.clone(), before));
                    }
                    hubs.push(hub.clone());
                }
                None => {
                    kept.insert(app.id.clone());
                    let hub = Arc::new(Hub::new(app, adapter.clone()));
                    change.added.push(hub.clone());
                    hubs.push(hub);
                }
            }
        }
        change.removed = self
            .hubs
            .iter()
            .filter(|h| !kept.contains(h.app.id.as_str()))
            .cloned()
            .collect();
        (Registry::new(hubs), change)
    }
}
