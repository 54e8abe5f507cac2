//! `presence`: members join presence channels (auth signed locally), then leave and rejoin;
//! join latency and member_added / member_removed counts against what is owed.
//!
//! Counting is exact: in the join phase a member that joined when its channel had `s` members
//! (its own roster snapshot) is owed `n - s` member_added, `n` being the members of its channel
//! in the end. In the cycle phase, at most one member per channel is out at a time, so each
//! leave/rejoin owes every other member of the channel one member_removed and one member_added.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant as TInstant;
use tokio_websockets::Message;

use crate::pusher::{self, Ctl, Step, Target, Ws, channel_auth, event_name};
use crate::stats::{self, Fail, H, K, Usage};
use crate::{Ctx, Outcome, PresenceArgs};

const FAILED: u64 = u64::MAX;

enum Cmd {
    /// Leave (unsubscribe), wait, rejoin; answer whether it worked.
    Cycle(oneshot::Sender<bool>),
    /// Answer whether this member's view of its channel is the full roster.
    Check(oneshot::Sender<bool>),
}

struct Member {
    idx: usize,
    ch: usize,
    channel: String,
    user: String,
    target: Arc<Target>,
    /// Members per channel that joined.
    joined: Arc<Vec<AtomicU64>>,
    /// Roster size each member saw on joining (FAILED if it did not join).
    snaps: Arc<Vec<AtomicU64>>,
    channels: usize,
    members: usize,
    rejoin_delay: Duration,
}

pub async fn run(ctx: &Ctx, a: &PresenceArgs) -> Outcome {
    let _progress = stats::progress("presence", ctx.server.clone(), ctx.common.quiet);
    let p = a.channels.max(1);
    let m = a.members;
    let joined: Arc<Vec<AtomicU64>> = Arc::new((0..p).map(|_| AtomicU64::new(0)).collect());
    let snaps: Arc<Vec<AtomicU64>> = Arc::new((0..m).map(|_| AtomicU64::new(FAILED)).collect());
    let rss_before = ctx.server.as_ref().and_then(|p| p.rss_kib());
    let usage = Usage::start(ctx.server.clone());

    // Join phase, paced at the join rate.
    stats::set_phase("join");
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<bool>();
    let mut senders = Vec::with_capacity(m);
    let join_rate = a.join_rate.max(1e-9);
    let start = TInstant::now();
    for i in 0..m {
        tokio::time::sleep_until(start + Duration::from_secs_f64(i as f64 / join_rate)).await;
        let (tx, rx) = mpsc::channel::<Cmd>(4);
        senders.push(tx);
        let mem = Member {
            idx: i,
            ch: i % p,
            channel: format!("presence-{}-{}", ctx.nonce, i % p),
            user: format!("u{i}"),
            target: ctx.target.clone(),
            joined: joined.clone(),
            snaps: snaps.clone(),
            channels: p,
            members: m,
            rejoin_delay: Duration::from_millis(a.rejoin_delay_ms),
        };
        tokio::spawn(mem.run(rx, done_tx.clone()));
    }
    drop(done_tx);
    let mut ok_joins = 0u64;
    for _ in 0..m {
        match done_rx.recv().await {
            Some(true) => ok_joins += 1,
            Some(false) => {}
            None => break,
        }
    }
    let join_secs = start.elapsed().as_secs_f64();
    let join_failures = stats::fails_total();
    let join_hist = stats::merged(H::Join);
    let mut owed_added: u64 = (0..m)
        .filter_map(|i| {
            let s = snaps[i].load(Relaxed);
            (s != FAILED).then(|| joined[i % p].load(Relaxed).saturating_sub(s))
        })
        .sum();
    let mut owed_removed: u64 = 0;
    wait_for(owed_added, owed_removed, a.grace).await;
    let join_added = stats::get(K::MemberAdded);

    // Leave/rejoin phase: one driver per channel, one member out at a time per channel.
    stats::set_phase("cycle");
    stats::reset(H::Join);
    let cycle_failures = Arc::new(AtomicU64::new(0));
    let cycle_start = TInstant::now();
    let end = cycle_start + Duration::from_secs_f64(a.duration.max(0.0));
    let period = Duration::from_secs_f64(p as f64 / a.cycle_rate.max(1e-9));
    let mut drivers = Vec::new();
    for c in 0..p {
        let list: Vec<(usize, mpsc::Sender<Cmd>)> = (c..m)
            .step_by(p)
            .filter(|&i| snaps[i].load(Relaxed) != FAILED)
            .map(|i| (i, senders[i].clone()))
            .collect();
        let n = joined[c].load(Relaxed);
        let failures = cycle_failures.clone();
        let timeout = ctx.target.timeout + Duration::from_millis(a.rejoin_delay_ms) * 2;
        drivers.push(tokio::spawn(async move {
            let (mut done, mut owed) = (0u64, 0u64);
            if list.is_empty() {
                return (done, owed);
            }
            // Stagger the channels over one period.
            let offset = period.mul_f64(c as f64 / p as f64);
            for k in 0u64.. {
                let due = cycle_start + offset + period.mul_f64(k as f64);
                if due >= end {
                    break;
                }
                tokio::time::sleep_until(due).await;
                let (_, tx) = &list[(k % list.len() as u64) as usize];
                let (rtx, rrx) = oneshot::channel();
                let ok = tx.send(Cmd::Cycle(rtx)).await.is_ok()
                    && matches!(tokio::time::timeout(timeout, rrx).await, Ok(Ok(true)));
                if ok {
                    done += 1;
                    owed += n.saturating_sub(1);
                    stats::inc(K::Cycles);
                } else {
                    failures.fetch_add(1, Relaxed);
                }
            }
            (done, owed)
        }));
    }
    let mut cycles = 0u64;
    for d in drivers {
        if let Ok((done, owed)) = d.await {
            cycles += done;
            owed_added += owed;
            owed_removed += owed;
        }
    }
    let cycle_secs = cycle_start.elapsed().as_secs_f64();
    stats::set_phase("grace");
    wait_for(owed_added, owed_removed, a.grace).await;
    let rejoin_hist = stats::merged(H::Join);

    // Everyone's view should now be the full roster of its channel.
    let mut consistent = 0u64;
    let mut inconsistent = 0u64;
    for (i, tx) in senders.iter().enumerate() {
        if snaps[i].load(Relaxed) == FAILED {
            continue;
        }
        let (rtx, rrx) = oneshot::channel();
        let good = tx.send(Cmd::Check(rtx)).await.is_ok()
            && matches!(
                tokio::time::timeout(Duration::from_secs(5), rrx).await,
                Ok(Ok(true))
            );
        if good {
            consistent += 1;
        } else {
            inconsistent += 1;
        }
    }

    let server_cpu = usage.server_cpu();
    let rss_after = ctx.server.as_ref().and_then(|p| p.rss_kib());
    let added = stats::get(K::MemberAdded);
    let removed = stats::get(K::MemberRemoved);
    let cycle_failures = cycle_failures.load(Relaxed);
    let dropped = stats::get(K::Dropped);
    let json = json!({
        "members": m,
        "channels": p,
        "join_rate": a.join_rate,
        "joined": ok_joins,
        "join_secs": stats::round(join_secs, 3),
        "failures": stats::fails_json(),
        "failures_total": join_failures,
        "join_latency": stats::hist_json(&join_hist),
        "join_phase_member_added": join_added,
        "cycle_rate": a.cycle_rate,
        "cycles": cycles,
        "cycles_per_sec": stats::round(cycles as f64 / cycle_secs.max(1e-9), 2),
        "cycle_failures": cycle_failures,
        "rejoin_latency": stats::hist_json(&rejoin_hist),
        "member_added": {"received": added, "expected": owed_added},
        "member_removed": {"received": removed, "expected": owed_removed},
        "views_consistent": consistent,
        "views_inconsistent": inconsistent,
        "server_cpu_s": server_cpu.map(|x| stats::round(x, 3)),
        "server_rss_before_kib": rss_before,
        "server_rss_after_kib": rss_after,
        "dropped": dropped,
        "close_codes": stats::CLOSE_CODES.json(),
        "pusher_errors": stats::get(K::PusherErrors),
    });
    let summary = format!(
        "{ok_joins}/{m} members joined {p} channel(s) in {join_secs:.2}s (failures {join_failures})\n{}\n\
         {cycles} leave/rejoin cycles in {cycle_secs:.1}s (failures {cycle_failures})\n{}\n\
         member_added {added}/{owed_added}, member_removed {removed}/{owed_removed}, views consistent {consistent}, inconsistent {inconsistent}\n\
         dropped connections {dropped}",
        stats::hist_line("join (subscribe -> succeeded)", &join_hist),
        stats::hist_line("rejoin", &rejoin_hist),
    );
    let ok = join_failures == 0
        && ok_joins as usize == m
        && cycle_failures == 0
        && added == owed_added
        && removed == owed_removed
        && inconsistent == 0
        && dropped == 0;
    drop(senders);
    Outcome { json, summary, ok }
}

/// Wait until the owed member events arrived, at most `grace` seconds.
async fn wait_for(added: u64, removed: u64, grace: f64) {
    let end = TInstant::now() + Duration::from_secs_f64(grace.max(0.0));
    while TInstant::now() < end
        && (stats::get(K::MemberAdded) < added || stats::get(K::MemberRemoved) < removed)
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn user_id(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Count a member event of our channel; update the view when given one.
fn member_event(b: &[u8], channel: &str, view: Option<&mut HashSet<String>>) {
    let added = match event_name(b) {
        Some(b"pusher_internal:member_added") => true,
        Some(b"pusher_internal:member_removed") => false,
        _ => return,
    };
    let Some(ctl) = std::str::from_utf8(b).ok().and_then(Ctl::parse) else {
        return;
    };
    if ctl.channel.as_deref() != Some(channel) {
        return;
    }
    let id = ctl.data.get("user_id").and_then(user_id);
    if added {
        stats::inc(K::MemberAdded);
        if let (Some(v), Some(id)) = (view, id) {
            v.insert(id);
        }
    } else {
        stats::inc(K::MemberRemoved);
        if let (Some(v), Some(id)) = (view, id) {
            v.remove(&id);
        }
    }
}

impl Member {
    /// Subscribe with a locally signed auth; returns the roster. Records the join latency.
    /// Member events read before the success are counted (they were sent while we were in).
    async fn join(&self, ws: &mut Ws, socket_id: &str) -> Result<HashSet<String>, Fail> {
        let cd = json!({"user_id": self.user, "user_info": {"name": self.user}}).to_string();
        let auth = channel_auth(
            &self.target.key,
            &self.target.secret,
            socket_id,
            &self.channel,
            Some(&cd),
        );
        let t0 = Instant::now();
        let data = pusher::subscribe(ws, &self.channel, Some(&auth), Some(&cd), |b| {
            member_event(b, &self.channel, None)
        })
        .await?;
        stats::record(H::Join, t0.elapsed().as_micros() as u64);
        let ids = data
            .get("presence")
            .and_then(|p| p.get("ids"))
            .and_then(Value::as_array)
            .ok_or(Fail::Protocol)?;
        Ok(ids.iter().filter_map(user_id).collect())
    }

    fn view_ok(&self, view: &HashSet<String>) -> bool {
        let n = self.joined[self.ch].load(Relaxed) as usize;
        view.len() == n
            && view.iter().all(|id| {
                id.strip_prefix('u')
                    .and_then(|s| s.parse::<usize>().ok())
                    .is_some_and(|j| j < self.members && j % self.channels == self.ch)
            })
    }

    async fn run(self, mut rx: mpsc::Receiver<Cmd>, done: mpsc::UnboundedSender<bool>) {
        stats::inc(K::Attempted);
        let r = tokio::time::timeout(self.target.timeout, async {
            let (mut ws, sid) = self.target.open().await?;
            let view = self.join(&mut ws, &sid).await?;
            Ok::<_, Fail>((ws, sid, view))
        })
        .await
        .unwrap_or(Err(Fail::Timeout));
        let (mut ws, sid, mut view) = match r {
            Ok(x) => x,
            Err(f) => {
                stats::fail(f);
                let _ = done.send(false);
                return;
            }
        };
        self.snaps[self.idx].store(view.len() as u64, Relaxed);
        self.joined[self.ch].fetch_add(1, Relaxed);
        stats::inc(K::Subscribed);
        stats::inc(K::Alive);
        let _ = done.send(true);
        loop {
            tokio::select! {
                item = ws.next() => match pusher::on_item(&mut ws, item, K::Received).await {
                    Step::Other(m) => member_event(m.as_payload(), &self.channel, Some(&mut view)),
                    Step::Closed(code) => {
                        pusher::lost(code);
                        return;
                    }
                    _ => {}
                },
                cmd = rx.recv() => match cmd {
                    None => return,
                    Some(Cmd::Check(reply)) => {
                        let _ = reply.send(self.view_ok(&view));
                    }
                    Some(Cmd::Cycle(reply)) => match self.cycle(&mut ws, &sid).await {
                        Ok(v) => {
                            view = v;
                            let _ = reply.send(true);
                        }
                        Err(f) => {
                            let _ = reply.send(false);
                            if f == Fail::Closed {
                                pusher::lost(None);
                                return;
                            }
                        }
                    },
                },
            }
        }
    }

    /// Unsubscribe, wait, subscribe again on the same connection.
    async fn cycle(&self, ws: &mut Ws, socket_id: &str) -> Result<HashSet<String>, Fail> {
        let msg = json!({"event": "pusher:unsubscribe", "data": {"channel": self.channel}});
        ws.send(Message::text(msg.to_string()))
            .await
            .map_err(|_| Fail::Closed)?;
        tokio::time::sleep(self.rejoin_delay).await;
        tokio::time::timeout(self.target.timeout, self.join(ws, socket_id))
            .await
            .unwrap_or(Err(Fail::Timeout))
    }
}
