//! Adapter implementations (the trait lives in [`crate::core::adapter`]):
//! the local one is in the core; [`redis`] makes several nodes one server;
//! [`routes`] keeps an engine's per-channel subscriptions in step with local
//! interest.

pub mod redis;
pub mod routes;

use std::sync::Arc;
use std::time::Duration;

use crate::config::ClusterConfig;
use crate::core::adapter::{Adapter, LocalAdapter};

/// The adapter the `[cluster]` settings ask for (validated by
/// [`crate::config::Config::validate`]): Redis, or the local one.
pub fn from_config(cluster: &ClusterConfig) -> Arc<dyn Adapter> {
    match (cluster.adapter.as_str(), &cluster.redis_url) {
        ("redis", Some(url)) => redis::RedisAdapter::new(redis::ClusterSettings {
            url: url.clone(),
            prefix: cluster.prefix.clone(),
            node_timeout: Duration::from_secs(cluster.node_timeout),
            query_timeout: Duration::from_millis(cluster.query_timeout_ms),
            interest_routing: cluster.routing != "broadcast",
        }),
        _ => Arc::new(LocalAdapter),
    }
}
