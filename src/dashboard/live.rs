//! The live dashboard socket: every second a snapshot of the app's figures
//! (the first one with the whole rate history, later ones with the last
//! second), and the debug console's lines for the app as they come (from
//! the core's happenings stream, subscribed only while the socket is open).
//!
//! Bounded: at most [`super::MAX_VIEWERS`] per node, each write times out,
//! and the session is checked again every second (a rotated secret or
//! token, or an expired cookie, closes it with 4001).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use hyper::upgrade::OnUpgrade;
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

use super::Dashboard;
use super::auth::{self, Session};
use crate::config::ServerConfig;
use crate::core::hub::Hub;
use crate::core::node::Node;
use crate::ws;

const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// Console entries sent in one message at most (the rest wait a tick).
const LOG_BATCH: usize = 200;

/// A place among the node's live viewers, given back on drop.
pub(super) struct Viewer(Arc<AtomicUsize>);

impl Viewer {
    pub(super) fn enter(count: &Arc<AtomicUsize>) -> Option<Viewer> {
        let before = count.fetch_add(1, Ordering::AcqRel);
        if before >= super::MAX_VIEWERS {
            count.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(Viewer(count.clone()))
    }
}

impl Drop for Viewer {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

pub(super) struct Live {
    pub dashboard: Arc<Dashboard>,
    pub node: Arc<Node>,
    pub config: Arc<ServerConfig>,
    pub hub: Arc<Hub>,
    pub session: Session,
    pub shutdown: CancellationToken,
    pub _viewer: Viewer,
}

impl Live {
    fn still_allowed(&self) -> bool {
        match &self.session.cookie {
            Some(cookie) => auth::verify(&self.node, &self.config, cookie)
                .is_some_and(|scope| scope.allows(&self.hub.app.id)),
            None => true,
        }
    }

    pub(super) async fn run(self, upgrade: OnUpgrade) {
        let Ok(upgraded) = upgrade.await else { return };
        let mut socket = ws::server_with(upgraded, 4096, None);
        let mut happenings = self.node.happenings().subscribe();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Console entries go out four times a second, figures once.
        let mut flush = tokio::time::interval(Duration::from_millis(250));
        flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut first = true;
        let mut pending: Vec<serde_json::Value> = Vec::new();
        let mut skipped = 0u64;
        loop {
            tokio::select! {
                () = self.shutdown.cancelled() => {
                    ws::close(&mut socket, 1001, "server shutting down", WRITE_TIMEOUT).await;
                    return;
                }
                _ = tick.tick() => {
                    if !self.still_allowed() {
                        ws::close(&mut socket, 4001, "session ended; log in again", WRITE_TIMEOUT).await;
                        return;
                    }
                    let points = if first { super::snapshot::HISTORY_SECONDS } else { 1 };
                    let mut value = super::snapshot::snapshot(
                        &self.node,
                        &self.hub,
                        &self.dashboard.history,
                        self.dashboard.started,
                        points,
                        super::CLUSTER_WAIT,
                    )
                    .await;
                    value["full_history"] = first.into();
                    first = false;
                    if ws::send_batch(&mut socket, [bytes::Bytes::from(value.to_string())], WRITE_TIMEOUT).await.is_err() {
                        return;
                    }
                }
                _ = flush.tick(), if !pending.is_empty() || skipped > 0 => {
                    let entries = std::mem::take(&mut pending);
                    let frame = json!({ "type": "log", "entries": entries, "skipped": skipped });
                    skipped = 0;
                    if ws::send_batch(&mut socket, [bytes::Bytes::from(frame.to_string())], WRITE_TIMEOUT).await.is_err() {
                        return;
                    }
                }
                happening = happenings.recv() => match happening {
                    Ok(h) if *h.app == *self.hub.app.id => {
                        if pending.len() < LOG_BATCH {
                            let mut line = super::console::entry(&h);
                            line["at"] = unix_ms().into();
                            pending.push(line);
                        } else {
                            skipped += 1;
                        }
                    }
                    Ok(_) => {}
                    Err(RecvError::Lagged(n)) => skipped += n,
                    Err(RecvError::Closed) => return,
                },
                message = socket.next() => match message {
                    // The page sends nothing that matters; pings are
                    // answered by the crate.
                    Some(Ok(m)) if m.is_close() => return,
                    Some(Ok(_)) => {}
                    Some(Err(e)) => {
                        ws::close_after_error(&mut socket, &e, WRITE_TIMEOUT).await;
                        return;
                    }
                    None => return,
                },
            }
        }
    }
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
