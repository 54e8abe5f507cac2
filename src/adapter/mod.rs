//! Adapter implementations (the trait lives in [`crate::core::adapter`]):
//! the local one is in the core; [`cluster`] makes several nodes one server
//! over a [`broker`] (one Redis, a Redis Cluster, or NATS); [`routes`] keeps
//! a broker's per-channel subscriptions in step with local interest.

pub mod broker;
pub mod cluster;
pub mod routes;

use std::sync::Arc;
use std::time::Duration;

use crate::config::ClusterConfig;
use crate::core::adapter::{Adapter, LocalAdapter};

/// The adapter the `[cluster]` settings ask for (validated by
/// [`crate::config::Config::validate`]); an error names a broker URL that
/// cannot be used.
pub fn from_config(cluster: &ClusterConfig) -> Result<Arc<dyn Adapter>, String> {
    let Some(url) = cluster.broker_url() else {
        return Ok(Arc::new(LocalAdapter));
    };
    let adapter = cluster::ClusterAdapter::new(cluster::ClusterSettings {
        broker: cluster.adapter.clone(),
        url: url.to_owned(),
        prefix: cluster.prefix.clone(),
        node_timeout: Duration::from_secs(cluster.node_timeout),
        query_timeout: Duration::from_millis(cluster.query_timeout_ms),
        interest_routing: cluster.routing != "broadcast",
    })
    .map_err(|e| format!("cluster.adapter {:?}: {e}", cluster.adapter))?;
    Ok(adapter)
}

/// The link of the HTTP fallbacks between nodes (over its own broker
/// connections), when the node is part of a cluster.
pub fn link_from_config(
    cluster: &ClusterConfig,
    node: &crate::core::node::Node,
) -> Option<Arc<dyn crate::core::relay::Link>> {
    let url = cluster.broker_url()?;
    let id = format!("{:016x}", rand::random::<u64>());
    match broker::from_settings(&cluster.adapter, url, &cluster.prefix, &id) {
        Ok(b) => Some(broker::link::BrokerLink::start(b, &cluster.prefix, node)),
        Err(e) => {
            tracing::warn!(error = %e, "no cluster link for the HTTP fallbacks");
            None
        }
    }
}
