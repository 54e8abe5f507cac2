use super::*;
use crate::core::connection::Wire;
use crate::core::event::RawJson;
use bytes::Bytes;

fn name_only(e: &Event) -> Bytes {
    let tag = match &e.kind {
        EventKind::Message { name, .. } => name.to_string(),
        EventKind::MemberAdded(m) => format!("added:{}", m.key),
        EventKind::MemberRemoved(m) => format!("removed:{}", m.key),
        EventKind::SubscriptionCount(n) => format!("count:{n}"),
        EventKind::Raw { payload, .. } => String::from_utf8_lossy(payload).into_owned(),
    };
    Bytes::from(tag)
}
static W: Wire = Wire {
    name: "test",
    variant: crate::core::connection::WireVariant::TestA,
    encode: name_only,
    notice: |_, _| None,
};

fn frames(c: &Connection) -> Vec<String> {
    c.drain()
        .frames
        .into_iter()
        .map(|f| String::from_utf8(f.data.to_vec()).unwrap())
        .collect()
}

fn member(id: &str) -> Member {
    Member::new(RawJson::string(id), None)
}

#[test]
fn fan_out_skips_excluded_and_counts() {
    let hub = Hub::new(
        AppConfig::default(),
        Arc::new(crate::core::adapter::LocalAdapter),
    );
    let spec = ChannelSpec::parse("news").unwrap();
    let a = Connection::new(&W, 16);
    let b = Connection::new(&W, 16);
    hub.subscribe(&a, &spec, None, |_| {}).unwrap();
    hub.subscribe(&b, &spec, None, |_| {}).unwrap();
    let event = Arc::new(Event::message(
        "news",
        "e",
        RawJson::string("x"),
        Some(a.socket_id.clone()),
    ));
    assert_eq!(hub.publish(&event), 1);
    assert!(frames(&a).is_empty());
    assert_eq!(frames(&b), vec!["e"]);
    assert_eq!(hub.channel("news").unwrap().subscription_count, 2);
    assert!(hub.unsubscribe(&a, "news", None));
    assert!(hub.unsubscribe(&b, "news", None));
    assert!(
        hub.channel("news").is_none(),
        "an empty channel is forgotten"
    );
}

fn skip_raw_binary(e: &Event) -> Bytes {
    match &e.kind {
        EventKind::Raw { binary: true, .. } => Bytes::new(),
        _ => name_only(e),
    }
}
static TEXT_ONLY: Wire = Wire {
    name: "text-only",
    variant: crate::core::connection::WireVariant::TestB,
    encode: skip_raw_binary,
    notice: |_, _| None,
};

#[test]
fn raw_events_keep_their_frame_type_and_exclusion_list() {
    let hub = Hub::new(
        AppConfig::default(),
        Arc::new(crate::core::adapter::LocalAdapter),
    );
    let spec = ChannelSpec::parse("room").unwrap();
    let (a, b, c, t) = (
        Connection::new(&W, 16),
        Connection::new(&W, 16),
        Connection::new(&W, 16),
        Connection::new(&TEXT_ONLY, 16),
    );
    for conn in [&a, &b, &c, &t] {
        hub.subscribe(conn, &spec, None, |_| {}).unwrap();
    }
    let event = Event::new(
        "room",
        EventKind::Raw {
            payload: Bytes::from_static(b"\x00\x01"),
            binary: true,
        },
        Some(a.socket_id.clone()),
    )
    .also_excluding([b.socket_id.clone()]);
    assert_eq!(hub.publish(&Arc::new(event)), 1, "only c gets it");
    assert!(a.drain().frames.is_empty() && b.drain().frames.is_empty());
    assert!(t.drain().frames.is_empty(), "an empty encoding is skipped");
    let got = c.drain().frames;
    assert_eq!(got.len(), 1);
    assert!(got[0].binary);
    assert_eq!(&got[0].data[..], b"\x00\x01");
}

#[test]
fn presence_dedupes_users() {
    let hub = Hub::new(
        AppConfig::default(),
        Arc::new(crate::core::adapter::LocalAdapter),
    );
    let spec = ChannelSpec::parse("presence-room").unwrap();
    let (a1, a2, b) = (
        Connection::new(&W, 16),
        Connection::new(&W, 16),
        Connection::new(&W, 16),
    );
    hub.subscribe(&b, &spec, Some(member("b")), |_| {}).unwrap();
    hub.subscribe(&a1, &spec, Some(member("a")), |_| {})
        .unwrap();
    assert_eq!(frames(&b), vec!["added:a"]);
    let mut seen = 0;
    hub.subscribe(&a2, &spec, Some(member("a")), |j| {
        seen = j.members.unwrap().len()
    })
    .unwrap();
    assert_eq!(seen, 2);
    assert!(
        frames(&b).is_empty(),
        "second tab of a user is not a new member"
    );
    assert_eq!(hub.channel("presence-room").unwrap().user_count, Some(2));
    hub.unsubscribe(&a1, "presence-room", Some("a"));
    assert!(frames(&b).is_empty(), "user a still has a tab open");
    hub.unsubscribe(&a2, "presence-room", Some("a"));
    assert_eq!(frames(&b), vec!["removed:a"]);
}

#[test]
fn presence_member_limit() {
    let hub = Hub::new(
        AppConfig {
            max_presence_members: 1,
            ..AppConfig::default()
        },
        Arc::new(crate::core::adapter::LocalAdapter),
    );
    let spec = ChannelSpec::parse("presence-x").unwrap();
    let (a, a2, b) = (
        Connection::new(&W, 4),
        Connection::new(&W, 4),
        Connection::new(&W, 4),
    );
    hub.subscribe(&a, &spec, Some(member("a")), |_| {}).unwrap();
    hub.subscribe(&a2, &spec, Some(member("a")), |_| {})
        .unwrap();
    assert_eq!(
        hub.subscribe(&b, &spec, Some(member("b")), |_| {}),
        Err(JoinError::PresenceFull(1))
    );
}

#[test]
fn cache_keeps_last_message() {
    let hub = Hub::new(
        AppConfig::default(),
        Arc::new(crate::core::adapter::LocalAdapter),
    );
    assert!(hub.cached("cache-x").is_none());
    hub.publish(&Arc::new(Event::message(
        "cache-x",
        "one",
        RawJson::string("1"),
        None,
    )));
    hub.publish(&Arc::new(Event::message(
        "cache-x",
        "two",
        RawJson::string("2"),
        None,
    )));
    hub.publish(&Arc::new(Event::message(
        "plain",
        "p",
        RawJson::string("3"),
        None,
    )));
    let cached = hub.cached("cache-x").unwrap();
    assert!(matches!(&cached.kind, EventKind::Message { name, .. } if &**name == "two"));
    assert!(hub.cached("plain").is_none());
}

#[test]
fn connection_quota() {
    let hub = Arc::new(Hub::new(
        AppConfig {
            max_connections: 1,
            ..AppConfig::default()
        },
        Arc::new(crate::core::adapter::LocalAdapter),
    ));
    let slot = hub.try_connect();
    assert!(slot.is_some());
    assert!(hub.try_connect().is_none());
    assert_eq!(hub.connection_count(), 1);
    drop(slot);
    assert_eq!(hub.connection_count(), 0);
    assert_eq!(hub.stats.connections.load(Ordering::Relaxed), 0);
    // A panicking holder gives its slot back while unwinding.
    let held = hub.clone();
    let panicked = std::thread::spawn(move || {
        let _slot = held.try_connect();
        panic!("session panicked");
    })
    .join();
    assert!(panicked.is_err());
    assert_eq!(hub.connection_count(), 0);
    assert!(hub.try_connect().is_some());
}
