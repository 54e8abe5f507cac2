"""Pusher HTTP API driven by the official Python SDK (`pusher` on PyPI),
observed through raw protocol-7 WebSocket clients."""

import json
import time

import pusher
import pytest

from conftest import channel_auth, collect_before_sentinel, uniq


def _poll(fn, pred, timeout=3.0, interval=0.05):
    """Call fn() until pred(result) or timeout; return the last result."""
    deadline = time.monotonic() + timeout
    while True:
        res = fn()
        if pred(res) or time.monotonic() > deadline:
            return res
        time.sleep(interval)


def _is_event(name, channel):
    return lambda m: m.get("event") == name and m.get("channel") == channel


# --------------------------------------------------------------------- trigger

def test_trigger_single_channel_exact_data(server):
    sdk = server.sdk()
    ch = uniq("orders-")
    data = json.dumps({"id": 42, "text": "héllo \"quoted\" \\ back", "emoji": "🎉", "nested": {"a": [1, 2.5, None]}},
                      ensure_ascii=False)
    with server.client() as ws:
        ws.subscribe(ch)
        assert sdk.trigger(ch, "order.created", data) == {}
        m = ws.wait_event("order.created", ch, timeout=5)
        assert m["data"] == data, "data string must be delivered byte-for-byte as triggered"
        assert isinstance(m["data"], str)
        # exactly once
        assert collect_before_sentinel(server, ws, ch, _is_event("order.created", ch)) == []


def test_trigger_dict_data_is_delivered_as_string(server):
    sdk = server.sdk()
    ch = uniq("dict-")
    with server.client() as ws:
        ws.subscribe(ch)
        sdk.trigger(ch, "e", {"k": "v", "n": 1})
        m = ws.wait_event("e", ch)
        assert isinstance(m["data"], str)
        assert json.loads(m["data"]) == {"k": "v", "n": 1}


def test_trigger_several_channels(server):
    sdk = server.sdk()
    chans = [uniq("multi-") for _ in range(3)]
    other = uniq("multi-other-")
    clients = [server.client() for _ in chans]
    bystander = server.client()
    try:
        for c, ch in zip(clients, chans):
            c.subscribe(ch)
        bystander.subscribe(other)
        sdk.trigger(chans, "fanout", "payload-123")
        for c, ch in zip(clients, chans):
            m = c.wait_event("fanout", ch)
            assert m["data"] == "payload-123"
            assert collect_before_sentinel(server, c, ch, lambda m: m.get("event") == "fanout") == [], \
                "delivered more than once"
        # the bystander's channel was not triggered; a sentinel triggered on it proves its stream is
        # live, and a wrongly routed "fanout" (queued while the others got theirs) would precede it
        assert collect_before_sentinel(server, bystander, other, lambda m: m.get("event") == "fanout") == []
    finally:
        for c in clients + [bystander]:
            c.close()


def test_one_client_on_several_triggered_channels_gets_one_copy_per_channel(server):
    sdk = server.sdk()
    a, b = uniq("pair-a-"), uniq("pair-b-")
    with server.client() as ws:
        ws.subscribe(a)
        ws.subscribe(b)
        sdk.trigger([a, b], "both", "x")
        got = collect_before_sentinel(server, ws, a, lambda m: m.get("event") == "both")
        got += collect_before_sentinel(server, ws, b, lambda m: m.get("event") == "both")
        assert sorted(m["channel"] for m in got) == sorted([a, b])


def test_trigger_socket_id_exclusion(server):
    sdk = server.sdk()
    ch = uniq("excl-")
    with server.client() as excluded, server.client() as other:
        excluded.subscribe(ch)
        other.subscribe(ch)
        sdk.trigger(ch, "news", "only-for-others", socket_id=excluded.socket_id)
        assert other.wait_event("news", ch)["data"] == "only-for-others"
        assert collect_before_sentinel(server, excluded, ch, lambda m: m.get("event") == "news") == [], \
            "the socket_id passed to trigger must not receive the event"
        # and the excluded socket still gets later events
        sdk.trigger(ch, "news", "for-all")
        assert excluded.wait_event("news", ch)["data"] == "for-all"


def test_trigger_batch(server):
    sdk = server.sdk()
    c1, c2 = uniq("batch1-"), uniq("batch2-")
    with server.client() as w1, server.client() as w2:
        w1.subscribe(c1)
        w2.subscribe(c2)
        res = sdk.trigger_batch([
            {"channel": c1, "name": "b.one", "data": "d1"},
            {"channel": c2, "name": "b.two", "data": {"x": 2}},
            {"channel": c1, "name": "b.three", "data": "d3"},
        ])
        assert isinstance(res, dict)
        assert w1.wait_event("b.one", c1)["data"] == "d1"
        assert w1.wait_event("b.three", c1)["data"] == "d3"
        assert json.loads(w2.wait_event("b.two", c2)["data"]) == {"x": 2}
        assert collect_before_sentinel(server, w2, c2, lambda m: m.get("event") in ("b.one", "b.three")) == []


def test_trigger_batch_keeps_order_on_one_channel(server):
    sdk = server.sdk()
    ch = uniq("order-")
    with server.client() as ws:
        ws.subscribe(ch)
        sdk.trigger_batch([{"channel": ch, "name": "seq", "data": str(i)} for i in range(10)])
        got = [ws.wait_event("seq", ch)["data"] for _ in range(10)]
        assert got == [str(i) for i in range(10)]


# --------------------------------------------------------------- channel info

def test_channels_info_prefix_and_user_count(server):
    sdk = server.sdk()
    tag = uniq("")
    p1, p2 = f"presence-{tag}-a", f"presence-{tag}-b"
    pub = f"{tag}-public"
    with server.client() as a, server.client() as b, server.client() as c:
        a.subscribe(p1, user_id="u1")
        b.subscribe(p1, user_id="u2")
        c.subscribe(p1, user_id="u2")  # same user, second connection
        c.subscribe(p2, user_id="u3")
        a.subscribe(pub)

        res = sdk.channels_info(prefix_filter=f"presence-{tag}", attributes=["user_count"])
        assert set(res["channels"]) == {p1, p2}, res
        assert res["channels"][p1]["user_count"] == 2
        assert res["channels"][p2]["user_count"] == 1

        res = sdk.channels_info(prefix_filter=tag)
        assert set(res["channels"]) == {pub}, res

        allc = sdk.channels_info()
        assert {p1, p2, pub} <= set(allc["channels"]), allc

        # unoccupied channels disappear from the list
        c.unsubscribe(p2)
        res = _poll(lambda: sdk.channels_info(prefix_filter=f"presence-{tag}"),
                    lambda r: p2 not in r["channels"])
        assert set(res["channels"]) == {p1}, res


def test_channels_info_user_count_requires_presence_prefix(server):
    sdk = server.sdk()
    with pytest.raises(pusher.errors.PusherBadRequest):
        sdk.channels_info(prefix_filter="private-", attributes=["user_count"])


def test_channel_info_counts(server):
    sdk = server.sdk()
    pres = uniq("presence-counts-")
    pub = uniq("public-counts-")
    with server.client() as a, server.client() as b, server.client() as c:
        a.subscribe(pres, user_id="alice")
        b.subscribe(pres, user_id="alice")
        c.subscribe(pres, user_id="bob")
        a.subscribe(pub)
        b.subscribe(pub)

        info = sdk.channel_info(pres, ["subscription_count", "user_count"])
        assert info["occupied"] is True
        assert info["subscription_count"] == 3
        assert info["user_count"] == 2

        info = sdk.channel_info(pub, ["subscription_count"])
        assert info["occupied"] is True
        assert info["subscription_count"] == 2

        b.unsubscribe(pres)
        info = _poll(lambda: sdk.channel_info(pres, ["subscription_count", "user_count"]),
                     lambda i: i.get("subscription_count") == 2)
        assert info["subscription_count"] == 2
        assert info["user_count"] == 2  # alice still has connection a

        a.close()
        info = _poll(lambda: sdk.channel_info(pres, ["subscription_count", "user_count"]),
                     lambda i: i.get("user_count") == 1)
        assert info["subscription_count"] == 1
        assert info["user_count"] == 1

    empty = sdk.channel_info(uniq("never-used-"))
    assert empty["occupied"] is False


def test_channel_info_vacated_after_disconnect(server):
    sdk = server.sdk()
    ch = uniq("vacate-")
    ws = server.client()
    ws.subscribe(ch)
    assert sdk.channel_info(ch)["occupied"] is True
    ws.close()
    info = _poll(lambda: sdk.channel_info(ch), lambda i: i["occupied"] is False)
    assert info["occupied"] is False


def test_users_info(server):
    sdk = server.sdk()
    ch = uniq("presence-users-")
    with server.client() as a1, server.client() as a2, server.client() as b:
        a1.subscribe(ch, user_id="user-a", user_info={"name": "A"})
        a2.subscribe(ch, user_id="user-a", user_info={"name": "A"})
        b.subscribe(ch, user_id="user-b")
        res = sdk.users_info(ch)
        ids = [u["id"] for u in res["users"]]
        assert sorted(ids) == ["user-a", "user-b"], res


def test_users_info_non_presence_is_400(server):
    sdk = server.sdk()
    with pytest.raises(pusher.errors.PusherBadRequest):
        sdk.users_info(uniq("private-nope-"))


# ------------------------------------------------------------- terminate

def _signed_in_pair(server, sdk, user_id, ch):
    conns = [server.client(), server.client()]
    for c in conns:
        r = c.signin(user_id, sdk=sdk)
        assert r["event"] == "pusher:signin_success", r
        c.subscribe(ch)
    return conns


def _assert_terminated(conn):
    code, frames = conn.wait_closed(timeout=5)
    errs = [f for f in frames if f.get("event") == "pusher:error"]
    codes = [json.loads(e["data"]).get("code") if isinstance(e.get("data"), str) else e["data"].get("code")
             for e in errs]
    assert code == 4009 or 4009 in codes, f"expected close 4009 (or pusher:error 4009); got close {code}, errors {errs}"


def test_terminate_user_connections(server):
    """Canonical endpoint POST /apps/{id}/users/{user}/terminate_connections."""
    sdk = server.sdk()
    ch = uniq("term-")
    victim = uniq("victim-")
    v1, v2 = _signed_in_pair(server, sdk, victim, ch)
    with server.client() as other:
        assert other.signin(uniq("bystander-"), sdk=sdk)["event"] == "pusher:signin_success"
        other.subscribe(ch)
        r = server.signed("POST", f"/apps/{server.app.id}/users/{victim}/terminate_connections", b"{}")
        assert r.status_code == 200, f"{r.status_code} {r.text}"
        _assert_terminated(v1)
        _assert_terminated(v2)
        other.ping()
        sdk.trigger(ch, "after-terminate", "still-here")
        assert other.wait_event("after-terminate", ch)["data"] == "still-here"


def test_terminate_user_connections_via_sdk(server):
    """pusher==3.3.4's terminate_user_connections() POSTs to /users/{id}/terminate_connections
    (no /apps/{app_id} prefix); the server has to resolve the app from auth_key."""
    sdk = server.sdk()
    ch = uniq("term-sdk-")
    victim = uniq("victim-")
    v1, v2 = _signed_in_pair(server, sdk, victim, ch)
    with server.client() as other:
        other.subscribe(ch)
        res = sdk.terminate_user_connections(victim)
        assert isinstance(res, dict)
        _assert_terminated(v1)
        _assert_terminated(v2)
        sdk.trigger(ch, "after-terminate", "ok")
        assert other.wait_event("after-terminate", ch)["data"] == "ok"



def test_terminate_presence_user(server):
    """A user known only through presence channel_data is terminated too, and the
    remaining members see member_removed."""
    ch = uniq("presence-term-")
    victim = uniq("pvictim-")
    v1, v2 = server.client(), server.client()
    v1.subscribe(ch, user_id=victim)
    v2.subscribe(ch, user_id=victim)
    with server.client() as other:
        other.subscribe(ch, user_id="stayer")
        r = server.signed("POST", f"/apps/{server.app.id}/users/{victim}/terminate_connections", b"{}")
        assert r.status_code == 200, f"{r.status_code} {r.text}"
        _assert_terminated(v1)
        _assert_terminated(v2)
        removed = other.wait_event("pusher_internal:member_removed", ch, timeout=5)
        assert json.loads(removed["data"])["user_id"] == victim
        assert [u["id"] for u in server.sdk().users_info(ch)["users"]] == ["stayer"]

# ---------------------------------------------------- SDK-produced auth

def test_sdk_authenticate_private(server):
    sdk = server.sdk()
    ch = uniq("private-sdk-")
    with server.client() as ws:
        auth = sdk.authenticate(channel=ch, socket_id=ws.socket_id)
        assert auth["auth"] == channel_auth(server.app.key, server.app.secret, ws.socket_id, ch)
        ws.subscribe(ch, auth=auth["auth"])
        sdk.trigger(ch, "secret", "s3")
        assert ws.wait_event("secret", ch)["data"] == "s3"


def test_sdk_authenticate_presence(server):
    """The SDK json.dumps() channel_data with spaces; the server must verify the exact string."""
    sdk = server.sdk()
    ch = uniq("presence-sdk-")
    with server.client() as ws, server.client() as watcher:
        watcher.subscribe(ch, user_id="watcher")
        auth = sdk.authenticate(channel=ch, socket_id=ws.socket_id,
                                custom_data={"user_id": "sdk-user", "user_info": {"name": "Ann", "n": 1}})
        assert ", " in auth["channel_data"] or ": " in auth["channel_data"]
        ok = ws.subscribe(ch, auth=auth["auth"], channel_data=auth["channel_data"])
        pres = json.loads(ok["data"])["presence"]
        assert pres["count"] == 2
        assert sorted(pres["ids"]) == ["sdk-user", "watcher"]
        assert pres["hash"]["sdk-user"] == {"name": "Ann", "n": 1}
        added = watcher.wait_event("pusher_internal:member_added", ch)
        assert json.loads(added["data"]) == {"user_id": "sdk-user", "user_info": {"name": "Ann", "n": 1}}


def test_sdk_authenticate_user_signin(server):
    sdk = server.sdk()
    with server.client() as ws:
        r = ws.signin("signed-user", user_info={"role": "x"}, sdk=sdk)
        assert r["event"] == "pusher:signin_success", r


def test_sdk_auth_for_other_socket_is_rejected(server):
    sdk = server.sdk()
    ch = uniq("private-stolen-")
    with server.client() as a, server.client() as b:
        auth = sdk.authenticate(channel=ch, socket_id=a.socket_id)
        b.subscribe(ch, auth=auth["auth"], wait=False)
        m = b.subscription_result(ch)
        assert m["event"] == "pusher:subscription_error", m
