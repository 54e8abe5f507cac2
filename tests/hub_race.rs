//! A subscribe racing the last unsubscribe of the same channel: the joiner
//! must end up in the channel the hub publishes to, and presence members
//! must equal the truth. Threads hammer one presence channel so that it is
//! emptied (and forgotten) and re-created many times a millisecond.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use resonance::core::adapter::LocalAdapter;
use resonance::core::app::AppConfig;
use resonance::core::channel::ChannelSpec;
use resonance::core::connection::Connection;
use resonance::core::event::{Event, Member, RawJson};
use resonance::core::hub::Hub;
use resonance::pusher::protocol::PUSHER_WIRE;

const CHANNEL: &str = "presence-race";
const THREADS: usize = 6;
/// Bounded: stops at the first lost subscriber, or after this long.
const BUDGET: Duration = Duration::from_millis(2500);

#[test]
fn subscribe_racing_the_last_unsubscribe_is_never_lost() {
    let hub = Arc::new(Hub::new(AppConfig::default(), Arc::new(LocalAdapter)));
    let lost = Arc::new(AtomicBool::new(false));
    let barrier = Arc::new(Barrier::new(THREADS));
    let deadline = Instant::now() + BUDGET;
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            let (hub, lost, barrier) = (hub.clone(), lost.clone(), barrier.clone());
            std::thread::spawn(move || {
                let spec = ChannelSpec::parse(CHANNEL).expect("name");
                let user = format!("u{t}");
                let member = || Member::new(RawJson::string(&user), None);
                let conn = Connection::new(&PUSHER_WIRE, 1 << 16);
                barrier.wait();
                let mut rounds = 0u64;
                while Instant::now() < deadline && !lost.load(Ordering::Relaxed) {
                    let mut confirmed = false;
                    hub.subscribe(&conn, &spec, Some(member()), |_| confirmed = true)
                        .expect("no member limit here");
                    assert!(confirmed);
                    // Confirmed, so the hub must publish to it: only this
                    // thread removes this connection.
                    if !hub.is_subscribed(CHANNEL, &conn.socket_id) {
                        lost.store(true, Ordering::Relaxed);
                        return (conn, true, rounds);
                    }
                    rounds += 1;
                    // End subscribed in some threads, to check delivery.
                    if t % 2 == 0 && Instant::now() >= deadline {
                        return (conn, true, rounds);
                    }
                    assert!(
                        hub.unsubscribe(&conn, CHANNEL, Some(&user)),
                        "a confirmed subscription could not be removed"
                    );
                    conn.drain();
                }
                (conn, false, rounds)
            })
        })
        .collect();
    let results: Vec<_> = workers
        .into_iter()
        .map(|w| w.join().expect("worker"))
        .collect();
    assert!(
        !lost.load(Ordering::Relaxed),
        "a confirmed subscriber was left in a channel the hub had forgotten"
    );
    let rounds: u64 = results.iter().map(|r| r.2).sum();
    eprintln!("{rounds} subscribe/unsubscribe rounds");
    assert!(rounds > 1000, "the race was exercised ({rounds} rounds)");

    // The truth: who is still subscribed. Each of them gets a publish, and
    // the member list is exactly their users.
    for (conn, _, _) in &results {
        conn.drain();
    }
    let subscribed: Vec<usize> = (0..THREADS).filter(|&t| results[t].1).collect();
    let event = Arc::new(Event::message(CHANNEL, "ping", RawJson::string("x"), None));
    assert_eq!(hub.publish(&event), subscribed.len());
    for (t, (conn, is_in, _)) in results.iter().enumerate() {
        let got = conn.drain().frames.len();
        assert_eq!(got, usize::from(*is_in), "thread {t}'s connection");
    }
    let members: BTreeSet<String> = hub
        .local_members(CHANNEL)
        .into_iter()
        .map(|m| m.key.to_string())
        .collect();
    let truth: BTreeSet<String> = subscribed.iter().map(|t| format!("u{t}")).collect();
    assert_eq!(members, truth, "presence members are the subscribed users");
}
