//! Forwarding fallback requests between nodes, so that no sticky balancer
//! is needed: a node that gets a request for a session it does not hold
//! asks every node (one cluster message); the holder does the work and
//! answers the asker directly. A forwarded receive request streams its
//! chunks back to the asker, which writes them to its client; when that
//! client goes away the asker tells the holder, whose session then sees
//! its receive request gone, as for a local one.
//!
//! Everything is bounded: requests waiting for answers, chunks in flight
//! per forwarded receive (over it the response ends, as for a slow
//! client), and every wait for the cluster ([`ASK_TIMEOUT`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use hyper::Response;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::session::{Op, RESPONSE_CHUNKS};
use super::{Body, Fallback, busy, chunked, no_content};
use crate::core::hub::Hub;
use crate::core::node::Node;
use crate::core::relay::Link;

/// How long a node waits for the holder of a session to answer; when none
/// does, the session exists nowhere (a receive request then starts one).
pub const ASK_TIMEOUT: Duration = Duration::from_millis(400);
/// Forwarded requests waiting for answers, per node.
const MAX_PENDING: usize = 4096;

#[derive(Debug, Serialize, Deserialize, PartialEq)]
#[serde(tag = "t", rename_all = "snake_case")]
enum Msg {
    /// To every node: whoever holds session `id` does `op` and answers.
    Ask {
        from: String,
        req: u64,
        id: String,
        op: AskOp,
    },
    /// To the asker: request `req` was taken by node `from`.
    Took { from: String, req: u64 },
    /// To the asker: a chunk of forwarded receive `req`.
    Chunk { req: u64, data: String },
    /// To the asker: forwarded receive `req` ends.
    End { req: u64 },
    /// To the holder: the client of forwarded receive `req` went away.
    Gone { from: String, req: u64 },
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
#[serde(tag = "k", rename_all = "snake_case")]
enum AskOp {
    Send { messages: Vec<String> },
    Receive { streaming: bool },
}

enum Reply {
    Took(String),
    Chunk(Bytes),
    End,
}

/// One node's end of the forwarding.
pub struct Relay {
    link: Arc<dyn Link>,
    fallback: Weak<Fallback>,
    node: Arc<Node>,
    next: AtomicU64,
    /// This node's forwarded requests, by request number.
    pending: Mutex<HashMap<u64, mpsc::Sender<Reply>>>,
    /// Receives this node holds for other nodes: (asker, request) → stop.
    serving: Mutex<HashMap<(String, u64), CancellationToken>>,
}

impl Relay {
    pub(crate) fn start(
        link: Arc<dyn Link>,
        fallback: Weak<Fallback>,
        node: &Arc<Node>,
    ) -> Arc<Relay> {
        let incoming = link.incoming();
        let relay = Arc::new(Relay {
            link,
            fallback,
            node: node.clone(),
            next: AtomicU64::new(1),
            pending: Mutex::new(HashMap::new()),
            serving: Mutex::new(HashMap::new()),
        });
        if let Some(mut incoming) = incoming {
            let me = Arc::downgrade(&relay);
            node.spawn(async move {
                while let Some(payload) = incoming.recv().await {
                    let Some(relay) = me.upgrade() else { break };
                    relay.on_message(&payload);
                }
            });
        }
        relay
    }

    fn me(&self) -> &str {
        self.link.node_id()
    }

    fn post(&self, to: Option<&str>, msg: &Msg) {
        match serde_json::to_vec(msg) {
            Ok(payload) => self.link.send(to, payload.into()),
            Err(e) => tracing::warn!(error = %e, "cannot encode a fallback relay message"),
        }
    }

    /// Registers a forwarded request and asks the cluster for `id`'s holder.
    fn ask(&self, id: &str, op: AskOp) -> Option<(u64, mpsc::Receiver<Reply>)> {
        let req = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(RESPONSE_CHUNKS + 2);
        {
            let mut pending = self.pending.lock();
            if pending.len() >= MAX_PENDING {
                return None;
            }
            pending.insert(req, tx);
        }
        self.post(
            None,
            &Msg::Ask {
                from: self.me().to_owned(),
                req,
                id: id.to_owned(),
                op,
            },
        );
        Some((req, rx))
    }

    fn forget(&self, req: u64) {
        self.pending.lock().remove(&req);
    }

    /// Waits for the holder's `Took`.
    async fn taken(&self, req: u64, rx: &mut mpsc::Receiver<Reply>) -> Option<String> {
        match tokio::time::timeout(ASK_TIMEOUT, rx.recv()).await {
            Ok(Some(Reply::Took(owner))) => Some(owner),
            _ => {
                self.forget(req);
                None
            }
        }
    }

    /// Forwards an `xhr_send`; `None` when no node holds the session.
    pub(crate) async fn forward_send(
        &self,
        hub: &Arc<Hub>,
        id: &str,
        messages: Vec<String>,
    ) -> Option<Response<Body>> {
        let Some((req, mut rx)) = self.ask(id, AskOp::Send { messages }) else {
            hub.stats.error("fallback_relay_full");
            return Some(busy());
        };
        let owner = self.taken(req, &mut rx).await;
        self.forget(req);
        owner.map(|_| no_content())
    }

    /// Forwards a receive request; `None` when no node holds the session.
    pub(crate) async fn forward_receive(
        self: &Arc<Self>,
        hub: &Arc<Hub>,
        id: &str,
        streaming: bool,
    ) -> Option<Response<Body>> {
        let Some((req, mut rx)) = self.ask(id, AskOp::Receive { streaming }) else {
            hub.stats.error("fallback_relay_full");
            return Some(busy());
        };
        let owner = self.taken(req, &mut rx).await?;
        let (tx, body) = mpsc::channel(RESPONSE_CHUNKS);
        let me = self.clone();
        self.node.spawn(async move {
            let mut gone = false;
            loop {
                tokio::select! {
                    reply = rx.recv() => match reply {
                        Some(Reply::Chunk(chunk)) => {
                            if tx.try_send(chunk).is_err() {
                                gone = true;
                                break;
                            }
                        }
                        Some(Reply::Took(_)) => {}
                        Some(Reply::End) | None => break,
                    },
                    () = tx.closed() => {
                        gone = true;
                        break;
                    }
                }
            }
            me.forget(req);
            if gone {
                let from = me.me().to_owned();
                me.post(Some(&owner), &Msg::Gone { from, req });
            }
        });
        Some(chunked(body))
    }

    fn on_message(self: &Arc<Self>, payload: &[u8]) {
        let msg = match serde_json::from_slice::<Msg>(payload) {
            Ok(msg) => msg,
            Err(e) => {
                tracing::debug!(error = %e, "ignoring a malformed fallback relay message");
                return;
            }
        };
        match msg {
            Msg::Ask { from, req, id, op } => {
                if from != self.me() {
                    self.serve(from, req, &id, op);
                }
            }
            Msg::Took { from, req } => self.reply(req, Reply::Took(from)),
            Msg::Chunk { req, data } => self.reply(req, Reply::Chunk(data.into())),
            Msg::End { req } => self.reply(req, Reply::End),
            Msg::Gone { from, req } => {
                if let Some(stop) = self.serving.lock().remove(&(from, req)) {
                    stop.cancel();
                }
            }
        }
    }

    /// Passes a reply to the waiting request; one that cannot keep up is
    /// dropped (its response ends).
    fn reply(&self, req: u64, reply: Reply) {
        let mut pending = self.pending.lock();
        if let Some(tx) = pending.get(&req)
            && tx.try_send(reply).is_err()
        {
            pending.remove(&req);
        }
    }

    /// Does what another node asks of a session, if this node holds it.
    fn serve(self: &Arc<Self>, asker: String, req: u64, id: &str, op: AskOp) {
        let Some(fallback) = self.fallback.upgrade() else {
            return;
        };
        if !fallback.holds(id) {
            return;
        }
        let took = Msg::Took {
            from: self.me().to_owned(),
            req,
        };
        match op {
            AskOp::Send { messages } => {
                if matches!(
                    fallback.offer(id, Op::Send(messages)),
                    super::Offered::Taken
                ) {
                    self.post(Some(&asker), &took);
                }
            }
            AskOp::Receive { streaming } => {
                let (tx, mut rx) = mpsc::channel(RESPONSE_CHUNKS);
                if !matches!(
                    fallback.offer(id, Op::Receive { streaming, tx }),
                    super::Offered::Taken
                ) {
                    return;
                }
                self.post(Some(&asker), &took);
                let stop = CancellationToken::new();
                let key = (asker.clone(), req);
                {
                    let mut serving = self.serving.lock();
                    if serving.len() >= MAX_PENDING {
                        return; // rx dropped: the session sees the receive gone
                    }
                    serving.insert(key.clone(), stop.clone());
                }
                let me = self.clone();
                self.node.spawn(async move {
                    loop {
                        tokio::select! {
                            chunk = rx.recv() => match chunk {
                                Some(chunk) => {
                                    let data = String::from_utf8_lossy(&chunk).into_owned();
                                    me.post(Some(&asker), &Msg::Chunk { req, data });
                                }
                                None => {
                                    me.post(Some(&asker), &Msg::End { req });
                                    break;
                                }
                            },
                            () = stop.cancelled() => break,
                        }
                    }
                    me.serving.lock().remove(&key);
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip() {
        let ask = Msg::Ask {
            from: "n1".into(),
            req: 7,
            id: "key/1/abc".into(),
            op: AskOp::Send {
                messages: vec!["{\"event\":\"x\"}".into()],
            },
        };
        let text = serde_json::to_string(&ask).unwrap();
        assert_eq!(serde_json::from_str::<Msg>(&text).unwrap(), ask);
        let chunk = Msg::Chunk {
            req: 1,
            data: "a[\"{}\"]\n".into(),
        };
        let text = serde_json::to_string(&chunk).unwrap();
        assert_eq!(serde_json::from_str::<Msg>(&text).unwrap(), chunk);
        assert!(serde_json::from_str::<Msg>("{\"t\":\"nope\"}").is_err());
    }
}
