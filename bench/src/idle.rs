//! `idle`: many subscribed connections that stay quiet; server memory per connection.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::sync::{Semaphore, mpsc};

use crate::pusher;
use crate::stats::{self, H, K, Usage};
use crate::{Ctx, IdleArgs, Outcome};

pub async fn run(ctx: &Ctx, a: &IdleArgs) -> Outcome {
    let _progress = stats::progress("idle", ctx.server.clone(), ctx.common.quiet);
    let channels = a.channels.max(1);
    let rss_before = ctx.server.as_ref().and_then(|p| p.rss_kib());
    let usage = Usage::start(ctx.server.clone());
    stats::set_phase("connect");

    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<bool>();
    let sem = Arc::new(Semaphore::new(ctx.common.concurrency.max(1)));
    let t0 = Instant::now();
    for i in 0..a.connections {
        let target = ctx.target.clone();
        let sem = sem.clone();
        let done = done_tx.clone();
        let channel = format!("{}-idle-{}", ctx.nonce, i % channels);
        tokio::spawn(async move {
            let Ok(permit) = sem.acquire_owned().await else {
                return;
            };
            let r = target.connect_subscribe(&channel).await;
            drop(permit);
            let _ = done.send(r.is_ok());
            if let Ok(mut ws) = r {
                let code = pusher::drain(&mut ws, K::Received).await;
                pusher::lost(code);
            }
        });
    }
    drop(done_tx);
    let mut ok = 0u64;
    let mut settled = 0usize;
    while settled < a.connections {
        match done_rx.recv().await {
            Some(true) => {
                ok += 1;
                settled += 1;
            }
            Some(false) => settled += 1,
            None => break,
        }
    }
    let connect_secs = t0.elapsed().as_secs_f64();
    let connect_cpu = usage.server_cpu();
    let connect_hist = stats::merged(H::Connect);

    // Let the server settle (allocator, lazily grown buffers) before sampling its memory.
    stats::set_phase("settle");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_after = ctx.server.as_ref().and_then(|p| p.rss_kib());
    let per_conn = match (rss_before, rss_after) {
        (Some(b), Some(a)) if ok > 0 => Some(stats::round((a as f64 - b as f64) / ok as f64, 2)),
        _ => None,
    };

    stats::set_phase("hold");
    tokio::time::sleep(Duration::from_secs_f64(a.hold.max(0.0))).await;
    let rss_end = ctx.server.as_ref().and_then(|p| p.rss_kib());
    let alive = stats::get(K::Alive);
    let dropped = stats::get(K::Dropped);
    let failures = stats::fails_total();
    let rate = ok as f64 / connect_secs.max(1e-9);

    let json = json!({
        "connections": a.connections,
        "channels": channels,
        "subscribed": ok,
        "failures": stats::fails_json(),
        "failures_total": failures,
        "connect_secs": stats::round(connect_secs, 3),
        "connect_rate": stats::round(rate, 1),
        "connect_latency": stats::hist_json(&connect_hist),
        "server_cpu_s_connect": connect_cpu.map(|x| stats::round(x, 2)),
        "server_rss_before_kib": rss_before,
        "server_rss_after_kib": rss_after,
        "server_rss_end_kib": rss_end,
        "rss_per_conn_kib": per_conn,
        "hold_secs": a.hold,
        "alive_after_hold": alive,
        "dropped": dropped,
        "close_codes": stats::CLOSE_CODES.json(),
        "pusher_errors": stats::get(K::PusherErrors),
    });
    let mut summary = format!(
        "subscribed {ok}/{} over {channels} channels in {connect_secs:.2}s ({rate:.0}/s), failures {failures} {}\n{}\n",
        a.connections,
        stats::fails_json(),
        stats::hist_line("connect+subscribe", &connect_hist),
    );
    if let (Some(b), Some(af)) = (rss_before, rss_after) {
        summary.push_str(&format!(
            "server rss {:.1} MiB -> {:.1} MiB ({} KiB per connection), {:.1} MiB after hold\n",
            b as f64 / 1024.0,
            af as f64 / 1024.0,
            per_conn.map(|x| format!("{x:.2}")).unwrap_or_default(),
            rss_end.unwrap_or(0) as f64 / 1024.0,
        ));
    }
    summary.push_str(&format!(
        "after {:.0}s hold: alive {alive}, dropped {dropped}",
        a.hold
    ));
    Outcome {
        json,
        summary,
        ok: failures == 0 && dropped == 0 && ok as usize == a.connections,
    }
}
