//! The live app set and reloads without a restart.
//!
//! Apps come from two sources: the config file's `[[apps]]` (re-read by a
//! reload: SIGHUP or `resonance reload`) and, when `apps_database` is set,
//! the `resonance_apps` table ([`db`], polled, and told at once through
//! LISTEN/NOTIFY on PostgreSQL). [`Control`] merges them (the file wins a
//! clash of id or key), hands the result to [`Node::apply_apps`] — which
//! swaps the registry that lookups read without a lock — and keeps each
//! app's Laravel Redis ingestion running for the apps that have one.
//!
//! A reload also swaps the TLS certificate for new handshakes
//! ([`crate::tls::CertSwap`]) and the log filter. A config with an error
//! is refused whole, with the key at fault, and the running one stays.

pub mod cli;
pub mod db;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::core::app::AppConfig;
use crate::core::hub::Hub;
use crate::core::node::{AppsChange, Node};
use crate::tls::CertSwap;

/// Changes the log filter of the running process (installed by the binary,
/// which owns the tracing subscriber). Returns an error for a bad filter.
pub type LogReloader = Box<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

/// The running configuration and everything a reload can change.
pub struct Control {
    node: Arc<Node>,
    state: Mutex<ControlState>,
    tls: Option<Arc<CertSwap>>,
    log: Mutex<Option<LogReloader>>,
    /// Stops each app's Redis ingestion, by app id.
    ingestion: Mutex<HashMap<String, CancellationToken>>,
    /// Serialises reloads and database syncs.
    applying: tokio::sync::Mutex<()>,
    /// The apps database and its poll interval, when configured.
    database: Option<(db::AppsDb, std::time::Duration)>,
    /// Webhook targets, rebuilt when the apps change.
    webhooks: Mutex<Option<Arc<crate::webhooks::Webhooks>>>,
}

struct ControlState {
    config: Config,
    /// The last good app list read from the database.
    db_apps: Vec<AppConfig>,
}

/// What a reload did, for the log and `resonance reload`.
#[derive(Debug, Default)]
pub struct ReloadReport {
    pub apps: String,
    pub tls_swapped: bool,
    pub log: Option<String>,
    /// Settings that differ from the running ones but need a restart.
    pub needs_restart: Vec<String>,
}

impl std::fmt::Display for ReloadReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "apps: {}", self.apps)?;
        if self.tls_swapped {
            write!(f, "; TLS certificate reloaded")?;
        }
        if let Some(log) = &self.log {
            write!(f, "; log filter now {log:?}")?;
        }
        if !self.needs_restart.is_empty() {
            write!(
                f,
                "; changed but only applied by a restart: {}",
                self.needs_restart.join(", ")
            )?;
        }
        Ok(())
    }
}

impl Control {
    /// The control of a node built from `config`; opens (lazily) the apps
    /// database when one is configured.
    pub fn new(
        node: Arc<Node>,
        config: Config,
        tls: Option<Arc<CertSwap>>,
    ) -> Result<Arc<Self>, String> {
        let database = match &config.apps_database {
            Some(url) => Some((
                db::AppsDb::open(url)?,
                std::time::Duration::from_secs(config.apps_database_poll),
            )),
            None => None,
        };
        Ok(Arc::new(Control {
            database,
            node,
            state: Mutex::new(ControlState {
                config,
                db_apps: Vec::new(),
            }),
            tls,
            log: Mutex::new(None),
            ingestion: Mutex::new(HashMap::new()),
            applying: tokio::sync::Mutex::new(()),
            webhooks: Mutex::new(None),
        }))
    }

    /// Reads the apps database once (at start, before serving: clients of
    /// database apps are not told their app does not exist while it is
    /// merely not read yet). A failure is logged and shown in `/ready`;
    /// the server then starts with the file's apps and keeps trying.
    pub async fn load_database(&self) {
        let Some((db, _)) = &self.database else {
            return;
        };
        match db.rows().await {
            Ok(rows) => {
                self.set_db_apps(db::apps_from_rows(&rows, &[])).await;
                self.node.set_dependency(db::DEPENDENCY, true);
            }
            Err(e) => {
                tracing::error!("{e}; starting without the database's apps, retrying");
                self.node.set_dependency(db::DEPENDENCY, false);
            }
        }
    }

    /// Starts following the apps database (a tracked node task).
    pub fn start_database(self: &Arc<Self>) {
        if let Some((db, poll)) = &self.database {
            self.node.spawn(db::run(self.clone(), db.clone(), *poll));
        }
    }

    /// Installs the log filter changer (see [`LogReloader`]).
    pub fn set_log_reloader(&self, reloader: LogReloader) {
        *self.log.lock() = Some(reloader);
    }

    pub fn node(&self) -> &Arc<Node> {
        &self.node
    }

    /// The running configuration.
    pub fn config(&self) -> Config {
        self.state.lock().config.clone()
    }

    /// Starts the Redis ingestion of every app that has one (at start).
    pub fn start_ingestion(&self) {
        for hub in self.node.hubs().iter() {
            self.start_ingestion_of(hub);
        }
    }

    fn start_ingestion_of(&self, hub: &Arc<Hub>) {
        if hub.app.redis_url.is_none() || !hub.app.enabled {
            return;
        }
        let stop = CancellationToken::new();
        if let Some(old) = self
            .ingestion
            .lock()
            .insert(hub.app.id.clone(), stop.clone())
        {
            old.cancel();
        }
        let (node, hub) = (self.node.clone(), hub.clone());
        self.node.spawn(async move {
            tokio::select! {
                () = stop.cancelled() => {}
                () = crate::ingress::redis::run(node, hub) => {}
            }
        });
    }

    fn stop_ingestion_of(&self, id: &str) {
        if let Some(stop) = self.ingestion.lock().remove(id) {
            stop.cancel();
        }
    }

    /// Has the webhook targets follow app changes.
    pub fn set_webhooks(&self, webhooks: Arc<crate::webhooks::Webhooks>) {
        *self.webhooks.lock() = Some(webhooks);
    }

    /// Keeps ingestion and webhook targets in step with an app change.
    fn follow(&self, change: &AppsChange) {
        if !change.is_empty()
            && let Some(webhooks) = self.webhooks.lock().clone()
        {
            webhooks.refresh();
        }
        for hub in &change.added {
            self.start_ingestion_of(hub);
        }
        for (hub, before) in &change.changed {
            let moved = before.redis_url != hub.app.redis_url
                || before.redis_prefix != hub.app.redis_prefix
                || before.enabled != hub.app.enabled;
            if moved {
                self.stop_ingestion_of(&before.id);
                self.start_ingestion_of(hub);
            }
        }
        for hub in &change.removed {
            self.stop_ingestion_of(&hub.app.id);
        }
    }

    /// Serves `file_apps` and `db_apps` merged: the file wins a clash of id
    /// or key (the database row is skipped with a warning).
    fn apply(&self, file_apps: &[AppConfig], db_apps: &[AppConfig]) -> AppsChange {
        let mut apps = file_apps.to_vec();
        let ids: HashSet<&str> = file_apps.iter().map(|a| a.id.as_str()).collect();
        let keys: HashSet<&str> = file_apps.iter().map(|a| a.key.as_str()).collect();
        for app in db_apps {
            if ids.contains(app.id.as_str()) || keys.contains(app.key.as_str()) {
                tracing::warn!(app_id = %app.id, "apps database: row skipped: its id or key is used by an app of the config file");
                continue;
            }
            apps.push(app.clone());
        }
        let change = self.node.apply_apps(apps);
        self.follow(&change);
        if !change.is_empty() {
            tracing::info!("apps changed: {change}");
        }
        change
    }

    /// The database apps served now.
    pub fn db_apps(&self) -> Vec<AppConfig> {
        self.state.lock().db_apps.clone()
    }

    /// Serves a new list of database apps (validated rows, unique ids and
    /// keys), keeping the file's apps.
    pub async fn set_db_apps(&self, db_apps: Vec<AppConfig>) -> AppsChange {
        let _one = self.applying.lock().await;
        let file_apps = {
            let mut state = self.state.lock();
            if state.db_apps == db_apps {
                return AppsChange::default();
            }
            state.db_apps = db_apps.clone();
            state.config.apps.clone()
        };
        self.apply(&file_apps, &db_apps)
    }

    /// Applies a freshly loaded and validated config: apps, the TLS
    /// certificate, the log filter. Anything invalid refuses the whole
    /// reload, naming the key at fault; the running config then stays.
    pub async fn reload(&self, new: Config) -> Result<ReloadReport, String> {
        let _one = self.applying.lock().await;
        new.validate()?;
        let old = self.config();
        let mut report = ReloadReport::default();
        // Check everything before changing anything.
        let tls_files = match (&new.server.tls_cert, &new.server.tls_key) {
            (Some(c), Some(k)) => Some((c.clone(), k.clone(), new.server.tls_chain.clone())),
            _ => None,
        };
        let tls_ready = match (&self.tls, &tls_files) {
            (Some(swap), Some((cert, key, chain))) => {
                Some(swap.prepare(cert, key, chain.as_deref())?)
            }
            _ => None,
        };
        if self.tls.is_some() != tls_files.is_some() {
            report
                .needs_restart
                .push("server.tls_cert/server.tls_key (turning TLS on or off)".into());
        }
        let log_changed = new.server.log != old.server.log;
        if log_changed {
            tracing_subscriber::EnvFilter::try_new(&new.server.log).map_err(|e| {
                format!("server.log: {:?} is not a log filter: {e}", new.server.log)
            })?;
        }
        report
            .needs_restart
            .extend(restart_only_changes(&old, &new));
        // Apply.
        if let (Some(swap), Some(key)) = (&self.tls, tls_ready) {
            swap.store(key);
            report.tls_swapped = true;
        }
        if log_changed {
            if let Some(set) = self.log.lock().as_ref() {
                set(&new.server.log)?;
            }
            report.log = Some(new.server.log.clone());
        }
        let db_apps = {
            let mut state = self.state.lock();
            state.config = new.clone();
            state.db_apps.clone()
        };
        report.apps = self.apply(&new.apps, &db_apps).to_string();
        Ok(report)
    }
}

/// Settings that differ between `old` and `new` and that a reload does not
/// apply (the listener, limits read once at start, the cluster).
fn restart_only_changes(old: &Config, new: &Config) -> Vec<String> {
    let table = |c: &Config| -> serde_json::Map<String, serde_json::Value> {
        let mut all = serde_json::Map::new();
        for (section, value) in [
            ("server", serde_json::to_value(&c.server)),
            ("cluster", serde_json::to_value(&c.cluster)),
        ] {
            if let Ok(serde_json::Value::Object(map)) = value {
                for (k, v) in map {
                    all.insert(format!("{section}.{k}"), v);
                }
            }
        }
        all.insert(
            "apps_database".into(),
            serde_json::to_value(&c.apps_database).unwrap_or_default(),
        );
        all
    };
    let (a, b) = (table(old), table(new));
    let live = [
        "server.log",
        "server.tls_cert",
        "server.tls_key",
        "server.tls_chain",
    ];
    let mut keys: Vec<String> = a
        .keys()
        .chain(b.keys())
        .filter(|k| !live.contains(&k.as_str()) && a.get(*k) != b.get(*k))
        .cloned()
        .collect();
    keys.sort();
    keys.dedup();
    keys
}
