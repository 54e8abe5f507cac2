//! `fanout` and `churn`: subscribers over channels, events published through the HTTP API,
//! delivery latency measured from a timestamp carried in the event data.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio::sync::{Notify, Semaphore, mpsc};
use tokio::time::Instant as TInstant;
use tokio_websockets::{CloseCode, Message};

use crate::http::{Api, HttpConn};
use crate::pusher::{self, Step, Target, Ws};
use crate::sio::{self, Proto, Publish, RedisPub};
use crate::stats::{self, H, K, Usage};
use crate::{ChurnArgs, Ctx, FanoutArgs, Outcome};

/// Bytes of the event data around the padding: `{"t":` + 16 digits + `,"p":"` + `"}`.
const DATA_OVERHEAD: usize = 29;

fn event_body(channel: &str, ts: u64, pad: &str) -> Vec<u8> {
    // data is a JSON-encoded string: {"t":<micros>,"p":"xxx"}
    format!(r#"{{"name":"bench","channel":"{channel}","data":"{{\"t\":{ts},\"p\":\"{pad}\"}}"}}"#)
        .into_bytes()
}

pub async fn run(ctx: &Ctx, a: &FanoutArgs, churn: Option<&ChurnArgs>) -> Outcome {
    let mode = if churn.is_some() { "churn" } else { "fanout" };
    let _progress = stats::progress(mode, ctx.server.clone(), ctx.common.quiet);
    let channels_n = a.channels.max(1);
    let channels: Arc<Vec<String>> = Arc::new(
        (0..channels_n)
            .map(|i| format!("{}-{i}", ctx.nonce))
            .collect(),
    );
    let pool = churn.map_or(0, |c| {
        c.churn_pool
            .unwrap_or_else(|| (a.subscribers / 4).min(((2.0 * c.churn_rate) as usize).max(50)))
            .min(a.subscribers)
    });

    // Set up the subscribers: the first `pool` ones churn, the others are measured.
    stats::set_phase("connect");
    let per_channel: Arc<Vec<AtomicU64>> =
        Arc::new((0..channels_n).map(|_| AtomicU64::new(0)).collect());
    let notifies: Vec<Arc<Notify>> = (0..pool).map(|_| Arc::new(Notify::new())).collect();
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<bool>();
    let sem = Arc::new(Semaphore::new(ctx.common.concurrency.max(1)));
    let t_setup = Instant::now();
    for i in 0..a.subscribers {
        let target = ctx.target.clone();
        let sem = sem.clone();
        let done = done_tx.clone();
        let ch = i % channels_n;
        let channel = channels[ch].clone();
        let per_channel = per_channel.clone();
        let notify = notifies.get(i).cloned();
        tokio::spawn(async move {
            let Ok(permit) = sem.acquire_owned().await else {
                return;
            };
            let r = target.connect_subscribe(&channel).await;
            drop(permit);
            match notify {
                None => {
                    if r.is_ok() {
                        per_channel[ch].fetch_add(1, Relaxed);
                    }
                    let _ = done.send(r.is_ok());
                    if let Ok(mut ws) = r {
                        let code = pusher::drain(&mut ws, K::Received).await;
                        pusher::lost(code);
                    }
                }
                Some(n) => {
                    let _ = done.send(r.is_ok());
                    churner(&target, &channel, r.ok(), &n).await;
                }
            }
        });
    }
    drop(done_tx);
    let mut subscribed = 0u64;
    for _ in 0..a.subscribers {
        match done_rx.recv().await {
            Some(true) => subscribed += 1,
            Some(false) => {}
            None => break,
        }
    }
    let setup_secs = t_setup.elapsed().as_secs_f64();
    let setup_failures = stats::fails_total();
    let measured: u64 = per_channel.iter().map(|c| c.load(Relaxed)).sum();
    tokio::time::sleep(Duration::from_millis(500)).await;
    if ctx.common.proto != Proto::Pusher {
        // Socket.IO subscribes are not answered: wait for the server to count them.
        settle_subscriptions(ctx, &channels, subscribed).await;
    }
    let redis_addr = match (&ctx.common.publish, &ctx.common.redis) {
        (Publish::Redis, Some(url)) => match sio::redis_addr(url).await {
            Ok(a) => Some(a),
            Err(e) => {
                eprintln!("--redis: {e}");
                None
            }
        },
        (Publish::Redis, None) => {
            eprintln!("--publish redis needs --redis");
            None
        }
        _ => None,
    };

    // Publish.
    stats::set_phase("publish");
    stats::reset(H::Delivery);
    stats::reset(H::Connect);
    let rss_before = ctx.server.as_ref().and_then(|p| p.rss_kib());
    let usage = Usage::start(ctx.server.clone());
    let planned = (a.rate * a.duration).round().max(0.0) as u64;
    let rate = a.rate.max(1e-9);
    let start = TInstant::now();
    let stop_at = start + Duration::from_secs_f64(a.duration + 1.0);
    let next = Arc::new(AtomicU64::new(0));
    let pad: Arc<str> = "x".repeat(a.payload.saturating_sub(DATA_OVERHEAD)).into();
    let new_publisher = || {
        tokio::spawn(
            Publisher {
                api: ctx.api.clone(),
                next: next.clone(),
                planned,
                rate,
                start,
                stop_at,
                channels: channels.clone(),
                per_channel: per_channel.clone(),
                pad: pad.clone(),
                publish: ctx.common.publish,
                echo_key: ctx.common.echo_key.clone().unwrap_or_default().into(),
                redis: redis_addr,
                redis_prefix: ctx.common.redis_prefix.clone().into(),
            }
            .run(),
        )
    };
    let mut pubs: Vec<_> = (0..a.publishers.max(1)).map(|_| new_publisher()).collect();
    let churn_stop = Arc::new(AtomicBool::new(false));
    let churn_driver = churn.filter(|_| pool > 0).map(|c| {
        let notifies = notifies.clone();
        let churn_rate = c.churn_rate.max(1e-9);
        let stop = churn_stop.clone();
        let end = start + Duration::from_secs_f64(a.duration);
        tokio::spawn(async move {
            let mut k: u64 = 0;
            loop {
                let due = start + Duration::from_secs_f64(k as f64 / churn_rate);
                if due >= end || stop.load(Relaxed) {
                    break;
                }
                tokio::time::sleep_until(due).await;
                notifies[(k % notifies.len() as u64) as usize].notify_one();
                k += 1;
            }
            k
        })
    });
    // Open loop: when every API connection is busy and the schedule slips, add connections
    // (up to --max-publishers) so that the publisher does not become the bottleneck.
    let max_pubs = a.max_publishers.max(a.publishers).max(1);
    loop {
        tokio::time::sleep(Duration::from_millis(20)).await;
        if pubs.iter().all(|h| h.is_finished()) {
            break;
        }
        let k = next.load(Relaxed);
        let due = start + Duration::from_secs_f64(k as f64 / rate);
        if k < planned && TInstant::now() > due + Duration::from_millis(10) && pubs.len() < max_pubs
        {
            pubs.push(new_publisher());
        }
    }
    let publishers_used = pubs.len();
    for p in pubs {
        let _ = p.await;
    }
    let publish_secs = start.elapsed().as_secs_f64();
    churn_stop.store(true, Relaxed);
    let churn_signalled = match churn_driver {
        Some(h) => h.await.unwrap_or(0),
        None => 0,
    };
    let received_in_window = stats::get(K::Received) + stats::get(K::ReceivedChurn);

    // Grace: wait for late deliveries (until everything expected arrived).
    stats::set_phase("grace");
    let grace_end = TInstant::now() + Duration::from_secs_f64(a.grace.max(0.0));
    while TInstant::now() < grace_end && stats::get(K::Received) < stats::get(K::Expected) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let window_secs = usage.elapsed();
    let server_cpu = usage.server_cpu();
    let tool_cpu = usage.me_cpu();
    let rss_after = ctx.server.as_ref().and_then(|p| p.rss_kib());

    let published = stats::get(K::Published);
    let published_ok = stats::get(K::PublishedOk);
    let api_errors = stats::get(K::ApiErrors);
    let expected = stats::get(K::Expected);
    let received = stats::get(K::Received);
    let received_churn = stats::get(K::ReceivedChurn);
    let deliveries = received + received_churn;
    let loss = expected.saturating_sub(received);
    let dropped = stats::get(K::Dropped);
    let churn_ops = stats::get(K::ChurnOps);
    let churn_failures = stats::get(K::ChurnFailures);
    let lat = stats::merged(H::Delivery);
    let api_lat = stats::merged(H::Api);
    let offered = a.rate * a.subscribers as f64 / channels_n as f64;
    let dps = received_in_window as f64 / publish_secs.max(1e-9);
    let cpu_per_m = server_cpu
        .filter(|_| deliveries > 0)
        .map(|c| stats::round(c / (deliveries as f64 / 1e6), 3));
    let rss_peak = stats::RSS_PEAK.load(Relaxed);

    let mut json = json!({
        "subscribers": a.subscribers,
        "channels": channels_n,
        "subscribed": subscribed,
        "measured_subscribers": measured,
        "setup_secs": stats::round(setup_secs, 3),
        "failures": stats::fails_json(),
        "failures_total": setup_failures,
        "rate": a.rate,
        "duration": a.duration,
        "payload": a.payload,
        "publishers": publishers_used,
        "offered_deliveries_per_sec": stats::round(offered, 1),
        "events_planned": planned,
        "events_published": published,
        "events_ok": published_ok,
        "api_errors": api_errors,
        "api_status": stats::API_STATUS.json(),
        "publish_rate": stats::round(published as f64 / publish_secs.max(1e-9), 1),
        "publish_secs": stats::round(publish_secs, 3),
        "expected": expected,
        "received": received,
        "loss": loss,
        "extra": received.saturating_sub(expected),
        "deliveries": deliveries,
        "deliveries_per_sec": stats::round(dps, 1),
        "latency": stats::hist_json(&lat),
        "api_latency": stats::hist_json(&api_lat),
        "server_cpu_s": server_cpu.map(|x| stats::round(x, 3)),
        "server_cpu_s_per_million": cpu_per_m,
        "server_rss_before_kib": rss_before,
        "server_rss_after_kib": rss_after,
        "server_rss_peak_kib": if rss_peak > 0 { Some(rss_peak) } else { None },
        "tool_cpu_s": tool_cpu.map(|x| stats::round(x, 3)),
        "window_secs": stats::round(window_secs, 3),
        "dropped": dropped,
        "close_codes": stats::CLOSE_CODES.json(),
        "pusher_errors": stats::get(K::PusherErrors),
    });
    let mut summary = format!(
        "{subscribed}/{} subscribed over {channels_n} channels in {setup_secs:.2}s (failures {setup_failures})\n\
         published {published}/{planned} events ({:.0}/s, api errors {api_errors}), offered {offered:.0} deliveries/s\n\
         received {received}/{expected} expected (loss {loss}), {deliveries} deliveries in all, {dps:.0}/s during publishing\n\
         {}\n{}\n",
        a.subscribers,
        published as f64 / publish_secs.max(1e-9),
        stats::hist_line("latency", &lat),
        stats::hist_line("api round trip", &api_lat),
    );
    if let Some(c) = server_cpu {
        summary.push_str(&format!(
            "server cpu {c:.2}s over {window_secs:.1}s ({} s per million deliveries), rss {:.1} MiB -> {:.1} MiB\n",
            cpu_per_m.map(|x| format!("{x:.3}")).unwrap_or_default(),
            rss_before.unwrap_or(0) as f64 / 1024.0,
            rss_after.unwrap_or(0) as f64 / 1024.0,
        ));
    }
    if let Some(t) = tool_cpu {
        summary.push_str(&format!("tool cpu {t:.2}s\n"));
    }
    summary.push_str(&format!("dropped connections {dropped}"));
    let mut ok = setup_failures == 0
        && api_errors == 0
        && loss == 0
        && dropped == 0
        && published == planned
        && subscribed as usize == a.subscribers;
    if churn.is_some() {
        if let Some(m) = json.as_object_mut() {
            m.insert("churn_rate".into(), json!(churn.map(|c| c.churn_rate)));
            m.insert("churn_pool".into(), json!(pool));
            m.insert("churn_signalled".into(), json!(churn_signalled));
            m.insert("churn_ops".into(), json!(churn_ops));
            m.insert("churn_failures".into(), json!(churn_failures));
            m.insert(
                "churn_reconnect_latency".into(),
                stats::hist_json(&stats::merged(H::Connect)),
            );
            m.insert("received_churn".into(), json!(received_churn));
        }
        summary.push_str(&format!(
            "\nchurn: {churn_ops} reconnects done of {churn_signalled} asked (pool {pool}), failures {churn_failures}\n{}",
            stats::hist_line("reconnect+resubscribe", &stats::merged(H::Connect)),
        ));
        ok = ok && churn_failures == 0;
    }
    Outcome { json, summary, ok }
}

struct Publisher {
    api: Arc<Api>,
    next: Arc<AtomicU64>,
    planned: u64,
    rate: f64,
    start: TInstant,
    stop_at: TInstant,
    channels: Arc<Vec<String>>,
    per_channel: Arc<Vec<AtomicU64>>,
    pad: Arc<str>,
    publish: Publish,
    echo_key: Arc<str>,
    redis: Option<std::net::SocketAddr>,
    redis_prefix: Arc<str>,
}

/// Waits (up to 30 s) until the server counts `want` subscriptions on `channels`, through
/// the laravel-echo-server API (`--echo-key`); without a key, waits 2 s.
async fn settle_subscriptions(ctx: &Ctx, channels: &[String], want: u64) {
    let Some(key) = ctx.common.echo_key.as_deref() else {
        tokio::time::sleep(Duration::from_secs(2)).await;
        return;
    };
    let deadline = TInstant::now() + Duration::from_secs(30);
    let mut last = 0;
    while TInstant::now() < deadline {
        if let Ok(mut c) = ctx.api.connect().await
            && let Ok((200, body)) = ctx.api.echo_channels(&mut c, key).await
            && let Ok(v) = serde_json::from_slice::<serde_json::Value>(&body)
        {
            last = channels
                .iter()
                .filter_map(|ch| v["channels"][ch]["subscription_count"].as_u64())
                .sum::<u64>();
            if last >= want {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!("warning: the server counts {last} of {want} subscriptions after 30 s");
}

impl Publisher {
    /// One publish on the chosen path: the HTTP status (Redis: 200 when at least one
    /// server received it, 503 when none did).
    async fn send(
        &self,
        conn: &mut Option<HttpConn>,
        rconn: &mut Option<RedisPub>,
        ch: usize,
        ts: u64,
    ) -> Option<u16> {
        let channel = &self.channels[ch];
        if self.publish == Publish::Redis {
            let addr = self.redis?;
            for _ in 0..2 {
                if rconn.is_none() {
                    *rconn = RedisPub::connect(addr).await.ok();
                }
                let c = rconn.as_mut()?;
                let key = format!("{}{channel}", self.redis_prefix);
                match c
                    .publish(key.as_bytes(), &sio::laravel_payload(ts, &self.pad))
                    .await
                {
                    Ok(n) => return Some(if n > 0 { 200 } else { 503 }),
                    Err(_) => *rconn = None,
                }
            }
            return None;
        }
        let body = match self.publish {
            Publish::EchoApi => sio::echo_api_body(channel, ts, &self.pad),
            _ => event_body(channel, ts, &self.pad),
        };
        for attempt in 0..2 {
            let reused = conn.is_some();
            if conn.is_none() {
                *conn = Some(self.api.connect().await.ok()?);
            }
            let c = conn.as_mut()?;
            let r = match self.publish {
                Publish::EchoApi => self.api.publish_echo(c, &self.echo_key, &body).await,
                _ => self.api.publish(c, &body).await,
            };
            match r {
                Ok(s) => {
                    if c.closed {
                        *conn = None;
                    }
                    return Some(s);
                }
                Err(_) => {
                    *conn = None;
                    // A reused keep-alive connection may have been closed by the server
                    // while idle: retry once on a fresh one.
                    if !reused || attempt == 1 {
                        return None;
                    }
                }
            }
        }
        None
    }

    /// Take the next event number, wait for its due time, publish it. Several publishers
    /// share the schedule, each with its own keep-alive connection.
    async fn run(self) {
        let mut conn = None;
        let mut rconn = None;
        loop {
            let k = self.next.fetch_add(1, Relaxed);
            if k >= self.planned {
                break;
            }
            let due = self.start + Duration::from_secs_f64(k as f64 / self.rate);
            tokio::time::sleep_until(due).await;
            if TInstant::now() > self.stop_at {
                // Too far behind schedule: the rest stays unsent.
                break;
            }
            let ch = (k % self.channels.len() as u64) as usize;
            let ts = stats::now_micros();
            stats::inc(K::Published);
            let t0 = Instant::now();
            let status = self.send(&mut conn, &mut rconn, ch, ts).await;
            stats::record(H::Api, t0.elapsed().as_micros() as u64);
            match status {
                Some(s) if (200..300).contains(&s) => {
                    stats::inc(K::PublishedOk);
                    stats::add(K::Expected, self.per_channel[ch].load(Relaxed));
                }
                other => {
                    stats::inc(K::ApiErrors);
                    stats::API_STATUS.add(other.unwrap_or(0));
                    if other.is_none() {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
        }
    }
}

/// A churning subscriber: on each signal, disconnect, reconnect and resubscribe.
async fn churner(target: &Target, channel: &str, mut ws: Option<Ws>, notify: &Notify) {
    loop {
        match ws.as_mut() {
            Some(w) => {
                tokio::select! {
                    item = w.next() => {
                        if let Step::Closed(code) = pusher::on_item(w, item, K::ReceivedChurn).await {
                            pusher::lost(code);
                            ws = None;
                        }
                        continue;
                    }
                    _ = notify.notified() => {}
                }
            }
            None => notify.notified().await,
        }
        if let Some(mut w) = ws.take() {
            stats::dec(K::Alive);
            let close = Message::close(Some(CloseCode::NORMAL_CLOSURE), "");
            let _ = tokio::time::timeout(Duration::from_secs(1), w.send(close)).await;
        }
        match target.connect_subscribe(channel).await {
            Ok(w) => {
                stats::inc(K::ChurnOps);
                ws = Some(w);
            }
            Err(_) => stats::inc(K::ChurnFailures),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_carries_timestamp_and_size() {
        let pad = "x".repeat(100 - DATA_OVERHEAD);
        let b = event_body("c-1", 1_700_000_000_000_000, &pad);
        let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
        let data = v["data"].as_str().unwrap();
        assert_eq!(data.len(), 100);
        let inner: serde_json::Value = serde_json::from_str(data).unwrap();
        assert_eq!(inner["t"], 1_700_000_000_000_000u64);
        // What a subscriber gets back has the same escaped data.
        let frame = format!(
            r#"{{"event":"bench","channel":"c-1","data":{}}}"#,
            serde_json::to_string(data).unwrap()
        );
        assert_eq!(
            pusher::scan_ts(frame.as_bytes()),
            Some(1_700_000_000_000_000)
        );
    }
}
