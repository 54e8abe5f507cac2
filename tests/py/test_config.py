"""Per-app limits and server settings from env vars and TOML (CONTRACT.md),
each on its own short-lived server; plus /ready and SIGTERM shutdown."""

import json
import time

import pytest
import requests

from conftest import App, PusherWs, RawWs, app_env, collect_before_sentinel, random_app, uniq


def err_code(msg):
    data = msg["data"]
    return (json.loads(data) if isinstance(data, str) else data).get("code")


def test_env_max_event_bytes(make_server):
    app = random_app()
    s = make_server(env=app_env(app, RESONANCE_APP_MAX_EVENT_BYTES=100), apps=[app])
    path = f"/apps/{app.id}/events"
    assert s.signed("POST", path, {"name": "e", "channel": "c", "data": "a" * 100}).status_code == 200
    r = s.signed("POST", path, {"name": "e", "channel": "c", "data": "a" * 101})
    assert r.status_code == 413, r.text


def test_env_max_connections_4004(make_server):
    app = random_app()
    s = make_server(env=app_env(app, RESONANCE_APP_MAX_CONNECTIONS=2), apps=[app])
    c1, c2 = s.client(), s.client()
    try:
        extra = RawWs(s.ws_url())
        code, frames = extra.wait_closed(timeout=5)
        assert code == 4004, f"third connection: expected close 4004, got {code} {frames}"
        assert not any(f.get("event") == "pusher:connection_established" for f in frames), frames
        errs = [f for f in frames if f.get("event") == "pusher:error"]
        assert errs and err_code(errs[0]) == 4004, frames
        c1.ping()
        c1.close()
        # a slot is free again
        deadline = time.monotonic() + 3
        while True:
            try:
                c3 = s.client()
                break
            except AssertionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        c3.ping()
        c3.close()
    finally:
        c1.close()
        c2.close()


def test_env_client_events_disabled(make_server):
    app = random_app()
    s = make_server(env=app_env(app, RESONANCE_APP_CLIENT_EVENTS="false"), apps=[app])
    ch = uniq("private-noclient-")
    with s.client() as a, s.client() as b:
        a.subscribe(ch)
        b.subscribe(ch)
        a.send_json({"event": "client-x", "channel": ch, "data": {}})
        a.wait_event("pusher:error", timeout=5)
        assert collect_before_sentinel(s, b, ch, lambda m: m.get("event") == "client-x") == []


def test_env_presence_member_limit(make_server):
    app = random_app()
    s = make_server(env=app_env(app, RESONANCE_APP_MAX_PRESENCE_MEMBERS=2), apps=[app])
    ch = uniq("presence-full-")
    with s.client() as a, s.client() as b, s.client() as a2, s.client() as c:
        a.subscribe(ch, user_id="a")
        b.subscribe(ch, user_id="b")
        a2.subscribe(ch, user_id="a")  # same user again: not a new member
        c.subscribe(ch, user_id="c", wait=False)
        m = c.subscription_result(ch)
        assert m["event"] == "pusher:subscription_error", m
        # the refused member was never added: a member_added would come before a sentinel
        # triggered on the channel after the refusal
        assert collect_before_sentinel(s, a, ch, lambda m: m.get("event") == "pusher_internal:member_added"
                                       and json.loads(m["data"])["user_id"] == "c") == []
        c.ping()


def test_env_presence_member_bytes(make_server):
    app = random_app()
    s = make_server(env=app_env(app, RESONANCE_APP_MAX_PRESENCE_MEMBER_BYTES=64), apps=[app])
    ch = uniq("presence-big-")
    with s.client() as ws:
        ws.subscribe(ch, user_id="big", user_info={"bio": "x" * 200}, wait=False)
        assert ws.subscription_result(ch)["event"] == "pusher:subscription_error"
        ws.subscribe(ch, user_id="small", user_info={"n": "ok"})


def test_env_allowed_origins(make_server):
    app = random_app()
    s = make_server(env=app_env(app, RESONANCE_APP_ALLOWED_ORIGINS="https://good.example,https://*.good.example"),
                    apps=[app])
    bad = RawWs(s.ws_url(), origin="https://evil.example")
    code, frames = bad.wait_closed(timeout=5)
    assert code == 4009, f"disallowed origin: expected close 4009, got {code} {frames}"
    with PusherWs(s.ws_url(), app, origin="https://good.example") as ok:
        ok.ping()
    with PusherWs(s.ws_url(), app, origin="https://app.good.example") as ok:
        ok.ping()


def test_env_activity_timeout_advertised(make_server):
    app = random_app()
    s = make_server(env=app_env(app, RESONANCE_APP_ACTIVITY_TIMEOUT=37), apps=[app])
    with s.client() as ws:
        assert ws.activity_timeout == 37


def test_env_subscription_count_events(make_server):
    app = random_app()
    s = make_server(env=app_env(app, RESONANCE_APP_SUBSCRIPTION_COUNT="true"), apps=[app])
    ch = uniq("counted-")
    with s.client() as a, s.client() as b:
        a.subscribe(ch)
        b.subscribe(ch)
        m = a.wait_for(lambda m: m.get("event") == "pusher_internal:subscription_count" and m.get("channel") == ch
                       and json.loads(m["data"]).get("subscription_count") == 2, 5, "subscription_count 2")
        assert json.loads(m["data"]) == {"subscription_count": 2}


def _toml(app: App, **app_extra) -> str:
    server_extra = app_extra.pop("server", {})
    lines = ["[server]", 'host = "127.0.0.1"', "port = __PORT__", "shutdown_grace = 2"]
    lines += [f"{k} = {v}" for k, v in server_extra.items()]
    lines += ["", "[[apps]]", f'id = "{app.id}"', f'key = "{app.key}"', f'secret = "{app.secret}"']
    lines += [f"{k} = {v}" for k, v in app_extra.items()]
    return "\n".join(lines) + "\n"


def test_toml_channel_and_batch_limits(make_server):
    app = random_app()
    s = make_server(config_toml=_toml(app, max_channels_per_event=3, max_events_per_batch=2), apps=[app])
    ev = f"/apps/{app.id}/events"
    assert s.signed("POST", ev, {"name": "e", "channels": ["a", "b", "c"], "data": "x"}).status_code == 200
    r = s.signed("POST", ev, {"name": "e", "channels": ["a", "b", "c", "d"], "data": "x"})
    assert r.status_code in (400, 413), r.text
    batch = f"/apps/{app.id}/batch_events"
    two = [{"name": "e", "channel": "a", "data": "x"}] * 2
    assert s.signed("POST", batch, {"batch": two}).status_code == 200
    r = s.signed("POST", batch, {"batch": two + two[:1]})
    assert r.status_code in (400, 413), r.text


def test_toml_max_request_bytes(make_server):
    app = random_app()
    s = make_server(config_toml=_toml(app, max_event_bytes=100000, server={"max_request_bytes": 4096}), apps=[app])
    ev = f"/apps/{app.id}/events"
    assert s.signed("POST", ev, {"name": "e", "channel": "a", "data": "x" * 3000}).status_code == 200
    r = s.signed("POST", ev, {"name": "e", "channel": "a", "data": "x" * 5000})
    assert r.status_code == 413, r.text


def test_env_overrides_first_app_of_config(make_server):
    file_app = random_app()
    env_secret = "env-secret-override"
    s = make_server(config_toml=_toml(file_app), env={"RESONANCE_APP_SECRET": env_secret},
                    apps=[App(file_app.id, file_app.key, env_secret)])
    ev = f"/apps/{file_app.id}/events"
    assert s.signed("POST", ev, {"name": "e", "channel": "a", "data": "x"}).status_code == 200
    r = s.signed("POST", ev, {"name": "e", "channel": "a", "data": "x"}, secret=file_app.secret)
    assert r.status_code == 401, r.text


def test_ready_and_sigterm_shutdown(make_server):
    app = random_app()
    s = make_server(env=app_env(app), apps=[app])
    r = s.get("/ready")
    assert r.status_code == 200
    ws = s.client()
    t0 = time.monotonic()
    s.proc.send_signal(15)
    code, frames = ws.wait_closed(timeout=5)
    assert code == 4200, f"expected close 4200 on shutdown, got {code} {frames}"
    errs = [f for f in frames if f.get("event") == "pusher:error"]
    assert errs and err_code(errs[0]) == 4200, frames
    s.proc.wait(timeout=5)  # shutdown_grace is 2 s in these tests
    assert time.monotonic() - t0 < 5
    with pytest.raises(requests.ConnectionError):
        requests.get(s.base_url + "/up", timeout=1)
