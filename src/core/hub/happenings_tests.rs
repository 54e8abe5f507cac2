//! The hub's happenings with the local adapter: settled occupancy,
//! presence and users, node-local happenings, the watchlist.

use std::sync::Arc;

use tokio::sync::broadcast::Receiver;

use super::super::adapter::LocalAdapter;
use super::super::app::AppConfig;
use super::super::channel::ChannelSpec;
use super::super::connection::{Connection, Wire, WireVariant};
use super::super::event::{Event, Member, RawJson};
use super::super::happenings::{ClusterWide, HOLD, Happening, NodeLocal, SeenEverywhere, What};
use super::super::node::Node;

fn encode(_: &Event) -> bytes::Bytes {
    bytes::Bytes::from_static(b"e")
}
static W: Wire = Wire {
    name: "test",
    variant: WireVariant::TestA,
    encode,
    notice: |_, _| None,
};

fn node() -> Arc<Node> {
    let node = Node::new(vec![AppConfig::default()], Arc::new(LocalAdapter));
    node.start_lanes(1);
    node
}

/// The cluster-wide and everywhere-seen happenings received so far.
fn settled(rx: &mut Receiver<Arc<Happening>>) -> Vec<What> {
    let mut out = Vec::new();
    while let Ok(h) = rx.try_recv() {
        if !matches!(h.what, What::Node(_)) {
            out.push(h.what.clone());
        }
    }
    out
}

fn occupied(c: &str) -> ClusterWide {
    ClusterWide::ChannelOccupied { channel: c.into() }
}
fn vacated(c: &str) -> ClusterWide {
    ClusterWide::ChannelVacated { channel: c.into() }
}

fn cluster(what: &[What]) -> Vec<ClusterWide> {
    what.iter()
        .filter_map(|w| match w {
            What::Cluster(c) => Some(c.clone()),
            _ => None,
        })
        .collect()
}

async fn past_hold() {
    tokio::time::sleep(HOLD + std::time::Duration::from_millis(50)).await;
    // Let the hold task run.
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test(start_paused = true)]
async fn vacated_is_held_and_a_come_back_reports_nothing() {
    let node = node();
    let hub = node.hubs()[0].clone();
    let mut rx = node.happenings().subscribe();
    let spec = ChannelSpec::parse("news").unwrap();
    let a = Connection::new(&W, 16);
    let b = Connection::new(&W, 16);
    hub.subscribe(&a, &spec, None, |_| {}).unwrap();
    hub.subscribe(&b, &spec, None, |_| {}).unwrap();
    assert_eq!(
        cluster(&settled(&mut rx)),
        vec![
            occupied("news"),
            ClusterWide::SubscriptionCount {
                channel: "news".into(),
                count: 1
            },
            ClusterWide::SubscriptionCount {
                channel: "news".into(),
                count: 2
            }
        ]
    );
    hub.unsubscribe(&a, "news", None);
    hub.unsubscribe(&b, "news", None);
    let _ = settled(&mut rx);
    // A reload: back within the hold.
    hub.subscribe(&a, &spec, None, |_| {}).unwrap();
    past_hold().await;
    let got = cluster(&settled(&mut rx));
    assert!(
        !got.contains(&occupied("news")) && !got.contains(&vacated("news")),
        "a come-back reports neither: {got:?}"
    );
    hub.unsubscribe(&a, "news", None);
    tokio::time::sleep(HOLD / 2).await;
    let got = cluster(&settled(&mut rx));
    assert!(!got.contains(&vacated("news")), "held: {got:?}");
    past_hold().await;
    assert_eq!(cluster(&settled(&mut rx)), vec![vacated("news")]);
}

#[tokio::test(start_paused = true)]
async fn members_and_users_settle_and_watchers_hear_them() {
    let node = node();
    let hub = node.hubs()[0].clone();
    let mut rx = node.happenings().subscribe();
    let watcher = Connection::new(&W, 16);
    fn notice(online: bool, ids: &[&str]) -> bytes::Bytes {
        format!(
            "{}:{}",
            if online { "online" } else { "offline" },
            ids.join(",")
        )
        .into()
    }
    let online = hub.watch(&watcher, &["7".into(), "8".into()], notice);
    assert!(online.is_empty());

    let spec = ChannelSpec::parse("presence-room").unwrap();
    let tab1 = Connection::new(&W, 16);
    let tab2 = Connection::new(&W, 16);
    let member = || Some(Member::new(RawJson::string("7"), None));
    hub.subscribe(&tab1, &spec, member(), |_| {}).unwrap();
    hub.add_user_connection("7", &tab1);
    hub.subscribe(&tab2, &spec, member(), |_| {}).unwrap();
    hub.add_user_connection("7", &tab2);
    let got = settled(&mut rx);
    assert!(got.iter().any(|w| matches!(w, What::Cluster(ClusterWide::MemberAdded { channel, user_id }) if &**channel == "presence-room" && &**user_id == "7")));
    assert_eq!(
        got.iter()
            .filter(|w| matches!(w, What::Cluster(ClusterWide::MemberAdded { .. })))
            .count(),
        1,
        "two tabs, one member_added"
    );
    assert!(got.iter().any(
        |w| matches!(w, What::Seen(SeenEverywhere::UserOnline { user_id }) if &**user_id == "7")
    ));
    let frames: Vec<_> = watcher.drain().frames.into_iter().map(|f| f.data).collect();
    assert_eq!(frames, vec![bytes::Bytes::from("online:7")]);
    assert_eq!(
        hub.watch(&watcher, &["7".into()], notice),
        vec![Box::<str>::from("7")]
    );

    for tab in [&tab1, &tab2] {
        hub.unsubscribe(tab, "presence-room", Some("7"));
        hub.remove_user_connection("7", tab);
    }
    assert_eq!(
        hub.watch(&watcher, &["7".into()], notice).len(),
        1,
        "still online while held"
    );
    past_hold().await;
    let got = settled(&mut rx);
    assert!(got.iter().any(|w| matches!(w, What::Cluster(ClusterWide::MemberRemoved { user_id, .. }) if &**user_id == "7")));
    assert!(got.iter().any(
        |w| matches!(w, What::Seen(SeenEverywhere::UserOffline { user_id }) if &**user_id == "7")
    ));
    let frames: Vec<_> = watcher.drain().frames.into_iter().map(|f| f.data).collect();
    assert_eq!(frames, vec![bytes::Bytes::from("offline:7")]);
    hub.unwatch(&watcher, &["7".into(), "8".into()]);
}

#[tokio::test]
async fn node_local_happenings_name_the_socket() {
    let node = node();
    let hub = node.hubs()[0].clone();
    let mut rx = node.happenings().subscribe();
    let a = Connection::new(&W, 16);
    hub.connection_opened(&a);
    hub.subscribe(&a, &ChannelSpec::parse("x").unwrap(), None, |_| {})
        .unwrap();
    hub.unsubscribe(&a, "x", None);
    hub.connection_closed(&a);
    let mut local = Vec::new();
    while let Ok(h) = rx.try_recv() {
        if let What::Node(n) = &h.what {
            local.push(n.clone());
        }
    }
    let id = a.socket_id.clone();
    assert_eq!(
        local,
        vec![
            NodeLocal::ConnectionOpened {
                socket_id: id.clone(),
                wire: WireVariant::TestA
            },
            NodeLocal::Subscribed {
                socket_id: id.clone(),
                channel: "x".into()
            },
            NodeLocal::Unsubscribed {
                socket_id: id.clone(),
                channel: "x".into()
            },
            NodeLocal::ConnectionClosed {
                socket_id: id,
                wire: WireVariant::TestA
            },
        ]
    );
}
