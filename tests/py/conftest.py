"""Shared fixtures and helpers for the Resonance Python integration suite.

The suite starts the real server binary (``RESONANCE_BIN``, default
``<repo>/target/release/resonance``) on a free port and talks to it with the
official Pusher Python SDK (HTTP API) and a raw WebSocket client
(``websockets.sync.client``) that speaks Pusher protocol 7.
"""

from __future__ import annotations

import collections
import hashlib
import hmac
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import urlencode

import pytest
import requests
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect as ws_connect

# Never route test traffic through a proxy.
os.environ["NO_PROXY"] = ",".join(filter(None, [os.environ.get("NO_PROXY"), "127.0.0.1", "localhost"]))
os.environ["no_proxy"] = os.environ["NO_PROXY"]

REPO = Path(__file__).resolve().parents[2]
BIN = Path(os.environ.get("RESONANCE_BIN", REPO / "target" / "release" / "resonance"))
STARTUP_TIMEOUT = 15.0
SOCKET_ID_RE = re.compile(r"^\d+\.\d+$")

# Servers that are currently running, so a failing test can show their output.
_LIVE_SERVERS: list["ResonanceServer"] = []


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------

def uniq(prefix: str = "chan-") -> str:
    """A channel/user name unique to this call (valid Pusher channel chars)."""
    return f"{prefix}{uuid.uuid4().hex[:12]}"


def hmac_hex(secret: str, msg: str) -> str:
    return hmac.new(secret.encode(), msg.encode(), hashlib.sha256).hexdigest()


def channel_auth(key: str, secret: str, socket_id: str, channel: str, channel_data: str | None = None) -> str:
    """`key:hex(hmac_sha256(secret, socket_id:channel[:channel_data]))`."""
    s = f"{socket_id}:{channel}"
    if channel_data is not None:
        s += f":{channel_data}"
    return f"{key}:{hmac_hex(secret, s)}"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def json_error_message(resp: requests.Response) -> str:
    """Assert the HTTP error body is a JSON object carrying a message; return it."""
    try:
        body = resp.json()
    except ValueError:
        raise AssertionError(f"error body is not JSON (status {resp.status_code}): {resp.text[:300]!r}")
    assert isinstance(body, dict), f"error body is not a JSON object: {body!r}"
    msg = body.get("error", body.get("message"))
    assert isinstance(msg, str) and msg.strip(), f"JSON error body has no non-empty 'error'/'message': {body!r}"
    return msg


class App:
    def __init__(self, app_id: str, key: str, secret: str):
        self.id = app_id
        self.key = key
        self.secret = secret

    def __repr__(self) -> str:
        return f"App(id={self.id!r}, key={self.key!r})"


def random_app(app_id: str | None = None) -> App:
    return App(
        app_id or str(100000 + secrets.randbelow(800000)),
        "key-" + secrets.token_hex(6),
        "secret-" + secrets.token_hex(12),
    )


def sign_query(method: str, path: str, params: dict, secret: str) -> str:
    """Pusher HTTP API signature: hmac(secret, METHOD\\nPATH\\nsorted k=v&...)."""
    qs = "&".join(f"{k.lower()}={v}" for k, v in sorted(params.items(), key=lambda kv: kv[0].lower()))
    return hmac_hex(secret, f"{method}\n{path}\n{qs}")


# --------------------------------------------------------------------------
# server process
# --------------------------------------------------------------------------

class ResonanceServer:
    def __init__(self, env: dict | None = None, config_toml: str | None = None, apps: list[App] | None = None):
        self.extra_env = dict(env or {})
        self.config_toml = config_toml
        self.apps = apps or []
        self.proc: subprocess.Popen | None = None
        self.port: int | None = None
        self.log_path: str | None = None
        self._log_file = None
        self._config_path: str | None = None

    @property
    def app(self) -> App:
        return self.apps[0]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def ws_url(self, key: str | None = None, query: str = "protocol=7&client=py&version=1") -> str:
        return f"ws://127.0.0.1:{self.port}/app/{key or self.app.key}?{query}"

    def log_tail(self, limit: int = 6000) -> str:
        if not self.log_path or not os.path.exists(self.log_path):
            return "<no server log>"
        with open(self.log_path, "rb") as f:
            data = f.read()
        return data[-limit:].decode("utf-8", "replace")

    def start(self) -> "ResonanceServer":
        if not BIN.exists():
            pytest.fail(f"server binary not found: {BIN} (set RESONANCE_BIN or build with cargo build --release)")
        last_err = None
        for _attempt in range(3):
            self.port = free_port()
            env = {k: v for k, v in os.environ.items() if not k.startswith("RESONANCE_")}
            env.setdefault("RUST_LOG", "info")
            env.setdefault("NO_COLOR", "1")
            env["RESONANCE_HOST"] = "127.0.0.1"
            env["RESONANCE_PORT"] = str(self.port)
            env["RESONANCE_SHUTDOWN_GRACE"] = "2"
            env.update(self.extra_env)
            args = [str(BIN), "start", "--host", "127.0.0.1", "--port", str(self.port)]
            if self.config_toml is not None:
                fd, self._config_path = tempfile.mkstemp(prefix="resonance-", suffix=".toml")
                with os.fdopen(fd, "w") as f:
                    f.write(self.config_toml.replace("__PORT__", str(self.port)))
                args += ["--config", self._config_path]
            fd, self.log_path = tempfile.mkstemp(prefix="resonance-", suffix=".log")
            self._log_file = os.fdopen(fd, "wb")
            self.proc = subprocess.Popen(args, env=env, stdout=self._log_file, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL)
            deadline = time.monotonic() + STARTUP_TIMEOUT
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    last_err = f"server exited early with code {self.proc.returncode}"
                    break
                try:
                    r = requests.get(self.base_url + "/up", timeout=1)
                    if r.status_code == 200:
                        _LIVE_SERVERS.append(self)
                        return self
                except requests.RequestException:
                    pass
                time.sleep(0.05)
            else:
                last_err = f"GET /up did not answer 200 within {STARTUP_TIMEOUT}s"
            log = self.log_tail()
            self.stop()
            if "in use" not in log.lower():  # only retry on a port race
                break
        pytest.fail(f"resonance failed to start: {last_err}\n--- server output ---\n{log}", pytrace=False)

    def stop(self) -> None:
        if self in _LIVE_SERVERS:
            _LIVE_SERVERS.remove(self)
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        if self._log_file:
            self._log_file.close()
            self._log_file = None
        if self._config_path and os.path.exists(self._config_path):
            os.unlink(self._config_path)
        if self.log_path and os.path.exists(self.log_path) and not os.environ.get("RESONANCE_KEEP_LOGS"):
            os.unlink(self.log_path)

    # ---- HTTP helpers ----------------------------------------------------

    def get(self, path: str, **kw) -> requests.Response:
        kw.setdefault("timeout", 5)
        return requests.get(self.base_url + path, **kw)

    def signed(self, method: str, path: str, body: bytes | str | dict | None = None, app: App | None = None,
               params: dict | None = None, *, key: str | None = None, secret: str | None = None,
               timestamp: int | None = None, body_md5: str | None = None, signature: str | None = None,
               timeout: float = 5) -> requests.Response:
        """Send a request signed the way the Pusher HTTP API expects; every
        part of the signature can be overridden to produce bad requests."""
        app = app or self.app
        if isinstance(body, dict) or isinstance(body, list):
            body = json.dumps(body)
        if isinstance(body, str):
            body = body.encode()
        q = dict(params or {})
        q["auth_key"] = key if key is not None else app.key
        q["auth_timestamp"] = str(timestamp if timestamp is not None else int(time.time()))
        q["auth_version"] = "1.0"
        if body is not None:
            q["body_md5"] = body_md5 if body_md5 is not None else hashlib.md5(body).hexdigest()
        q["auth_signature"] = signature if signature is not None else sign_query(
            method, path, q, secret if secret is not None else app.secret)
        headers = {"Content-Type": "application/json"} if body is not None else {}
        return requests.request(method, f"{self.base_url}{path}?{urlencode(q, safe=',')}", data=body,
                                headers=headers, timeout=timeout)

    def sdk(self, app: App | None = None):
        import pusher
        app = app or self.app
        return pusher.Pusher(app_id=app.id, key=app.key, secret=app.secret, host="127.0.0.1",
                             port=self.port, ssl=False, timeout=5)

    def client(self, app: App | None = None, **kw) -> "PusherWs":
        app = app or self.app
        return PusherWs(self.ws_url(app.key), app, **kw)

    def trigger(self, channel: str, event: str, data: str, app: App | None = None, **extra) -> requests.Response:
        body = {"name": event, "channel": channel, "data": data, **extra}
        r = self.signed("POST", f"/apps/{(app or self.app).id}/events", body, app=app)
        assert r.status_code == 200, f"trigger failed: {r.status_code} {r.text}"
        return r


def collect_before_sentinel(server, ws, channel: str, pred, app: App | None = None) -> list:
    """Trigger a sentinel event on `channel` through the HTTP API (after the action under test)
    and return the frames matching pred that `ws` got before it: one channel's events reach a
    connection in the order they were published, so nothing the action caused can come later."""
    token = uniq("sentinel-")
    server.trigger(channel, "sentinel", token, app=app)
    return ws.collect_until(
        pred, lambda m: m.get("event") == "sentinel" and m.get("channel") == channel and m.get("data") == token,
        desc=f"the sentinel on {channel}")


# --------------------------------------------------------------------------
# raw Pusher WebSocket client
# --------------------------------------------------------------------------

class Closed(Exception):
    def __init__(self, code, reason):
        super().__init__(f"connection closed: code={code} reason={reason!r}")
        self.code = code
        self.reason = reason


class RawWs:
    """A WebSocket connection that buffers decoded frames so that a test can
    wait for one particular message without losing the others."""

    def __init__(self, url: str, **kw):
        kw.setdefault("open_timeout", 5)
        kw.setdefault("close_timeout", 2)
        kw.setdefault("proxy", None)
        kw.setdefault("max_size", 4 * 1024 * 1024)
        kw.setdefault("legacy", True)
        self.url = url
        self.ws = ws_connect(url, **kw)
        self.pending: collections.deque = collections.deque()
        self.history: list = []  # every frame ever received, decoded
        self.close_code = None
        self.close_reason = None

    # -- low level --
    def send_json(self, obj) -> None:
        self.ws.send(json.dumps(obj))

    def send_raw(self, data) -> None:
        self.ws.send(data)

    def _recv_one(self, timeout: float):
        """One frame (decoded JSON when possible), None on timeout; raises Closed."""
        if self.close_code is not None:
            raise Closed(self.close_code, self.close_reason)
        try:
            raw = self.ws.recv(timeout=max(timeout, 0.001))
        except TimeoutError:
            return None
        except ConnectionClosed as e:
            rcvd = e.rcvd
            self.close_code = rcvd.code if rcvd is not None else 1006
            self.close_reason = rcvd.reason if rcvd is not None else ""
            raise Closed(self.close_code, self.close_reason)
        if isinstance(raw, str):
            try:
                msg = json.loads(raw)
            except ValueError:
                msg = {"__raw__": raw}
        else:
            msg = {"__binary__": raw}
        self.history.append(msg)
        return msg

    # -- waiting --
    def wait_for(self, pred, timeout: float = 5.0, desc: str = "message"):
        for i, m in enumerate(self.pending):
            if pred(m):
                del self.pending[i]
                return m
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"timed out after {timeout}s waiting for {desc}; "
                                     f"unconsumed frames: {list(self.pending)[-10:]}")
            try:
                m = self._recv_one(left)
            except Closed as c:
                raise AssertionError(f"{c} while waiting for {desc}; unconsumed frames: {list(self.pending)[-10:]}")
            if m is None:
                continue
            if pred(m):
                return m
            self.pending.append(m)

    def wait_event(self, event: str, channel: str | None = None, timeout: float = 5.0):
        return self.wait_for(
            lambda m: m.get("event") == event and (channel is None or m.get("channel") == channel),
            timeout, f"{event!r} on {channel!r}")

    def collect(self, pred, duration: float) -> list:
        """Read for `duration` seconds; return (and consume) all frames matching pred.
        Stops early (without raising) if the connection closes."""
        out = [m for m in self.pending if pred(m)]
        self.pending = collections.deque(m for m in self.pending if not pred(m))
        deadline = time.monotonic() + duration
        while (left := deadline - time.monotonic()) > 0:
            try:
                m = self._recv_one(left)
            except Closed:
                break
            if m is None:
                continue
            if pred(m):
                out.append(m)
            else:
                self.pending.append(m)
        return out

    def collect_until(self, pred, sentinel, timeout: float = 5.0, desc: str = "the sentinel") -> list:
        """Read until a frame matching `sentinel` arrives (consumed); return (and consume) the
        frames matching pred that came before it. The sentinel was sent through the same path
        after the action under test, so whatever that action caused has arrived: no fixed wait."""
        out, rest, found = [], collections.deque(), False
        while self.pending:
            m = self.pending.popleft()
            if found:
                rest.append(m)
            elif sentinel(m):
                found = True
            elif pred(m):
                out.append(m)
            else:
                rest.append(m)
        self.pending = rest
        deadline = time.monotonic() + timeout
        while not found:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"timed out after {timeout}s waiting for {desc}; "
                                     f"unconsumed frames: {list(self.pending)[-10:]}")
            try:
                m = self._recv_one(left)
            except Closed as c:
                raise AssertionError(f"{c} while waiting for {desc}; unconsumed frames: {list(self.pending)[-10:]}")
            if m is None:
                continue
            if sentinel(m):
                found = True
            elif pred(m):
                out.append(m)
            else:
                self.pending.append(m)
        return out

    def wait_closed(self, timeout: float = 5.0):
        """Read until the server closes the connection; return (code, frames received meanwhile)."""
        deadline = time.monotonic() + timeout
        seen = list(self.pending)
        self.pending.clear()
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"connection not closed by the server within {timeout}s; frames: {seen[-10:]}")
            try:
                m = self._recv_one(left)
            except Closed:
                return self.close_code, seen
            if m is not None:
                seen.append(m)

    def close(self) -> None:
        try:
            self.ws.close()
        except Exception:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class PusherWs(RawWs):
    """Raw Pusher protocol 7 client: connects, reads connection_established,
    subscribes (signing private/presence itself), waits for events."""

    def __init__(self, url: str, app: App, **kw):
        super().__init__(url, **kw)
        self.app = app
        est = self.wait_event("pusher:connection_established", timeout=5)
        assert isinstance(est.get("data"), str), f"connection_established data must be a JSON string: {est!r}"
        data = json.loads(est["data"])
        self.socket_id = data["socket_id"]
        assert SOCKET_ID_RE.match(self.socket_id), f"bad socket_id {self.socket_id!r}"
        assert isinstance(data.get("activity_timeout"), int), f"activity_timeout missing/not int: {data!r}"
        self.activity_timeout = data["activity_timeout"]

    def subscribe(self, channel: str, *, user_id: str | None = None, user_info=None, auth: str | None = None,
                  channel_data: str | None = None, wait: bool = True, timeout: float = 5.0):
        payload = {"channel": channel}
        if channel.startswith("presence-") and channel_data is None and user_id is not None:
            cd = {"user_id": user_id}
            if user_info is not None:
                cd["user_info"] = user_info
            channel_data = json.dumps(cd)
        if auth is None and (channel.startswith("private-") or channel.startswith("presence-")):
            auth = channel_auth(self.app.key, self.app.secret, self.socket_id, channel, channel_data)
        if auth is not None:
            payload["auth"] = auth
        if channel_data is not None:
            payload["channel_data"] = channel_data
        self.send_json({"event": "pusher:subscribe", "data": payload})
        if not wait:
            return None
        m = self.wait_for(
            lambda m: m.get("channel") == channel and m.get("event") in (
                "pusher_internal:subscription_succeeded", "pusher:subscription_error")
            or (m.get("event") == "pusher:error"),
            timeout, f"subscription result for {channel!r}")
        assert m.get("event") == "pusher_internal:subscription_succeeded", \
            f"subscribe to {channel!r} failed: {m!r}"
        return m

    def subscription_result(self, channel: str, timeout: float = 5.0):
        return self.wait_for(
            lambda m: m.get("channel") == channel and m.get("event") in (
                "pusher_internal:subscription_succeeded", "pusher:subscription_error")
            or m.get("event") == "pusher:error",
            timeout, f"subscription result for {channel!r}")

    def unsubscribe(self, channel: str) -> None:
        self.send_json({"event": "pusher:unsubscribe", "data": {"channel": channel}})

    def ping(self, timeout: float = 5.0):
        self.send_json({"event": "pusher:ping", "data": {}})
        return self.wait_event("pusher:pong", timeout=timeout)

    def collect_before_pong(self, pred, timeout: float = 5.0) -> list:
        """Sentinel on this connection: the server answers one connection's messages in order, so
        the pong comes after every reply to what was sent before it. Returns the frames matching
        pred received before the pong."""
        self.send_json({"event": "pusher:ping", "data": {}})
        return self.collect_until(pred, lambda m: m.get("event") == "pusher:pong", timeout, "pusher:pong")

    def signin(self, user_id: str, user_info=None, sdk=None, timeout: float = 5.0):
        user = {"id": user_id}
        if user_info is not None:
            user["user_info"] = user_info
        if sdk is not None:
            auth = sdk.authenticate_user(self.socket_id, user)
        else:
            ud = json.dumps(user)
            auth = {"auth": f"{self.app.key}:{hmac_hex(self.app.secret, f'{self.socket_id}::user::{ud}')}",
                    "user_data": ud}
        self.send_json({"event": "pusher:signin", "data": auth})
        return self.wait_for(lambda m: m.get("event") in ("pusher:signin_success", "pusher:error"),
                             timeout, "signin result")


# --------------------------------------------------------------------------
# pytest plumbing
# --------------------------------------------------------------------------

@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed and _LIVE_SERVERS:
        for s in _LIVE_SERVERS:
            rc = s.proc.poll() if s.proc else None
            state = "running" if rc is None else f"EXITED with code {rc}"
            rep.sections.append((f"resonance output (port {s.port}, {state}, last lines)", s.log_tail(4000)))


@pytest.fixture
def make_server():
    """Factory: make_server(env=..., config_toml=..., apps=[...]) -> started server,
    stopped at the end of the test."""
    started = []

    def factory(**kw):
        s = ResonanceServer(**kw).start()
        started.append(s)
        return s

    yield factory
    for s in started:
        s.stop()


def app_env(app: App, **extra) -> dict:
    env = {"RESONANCE_APP_ID": app.id, "RESONANCE_APP_KEY": app.key, "RESONANCE_APP_SECRET": app.secret}
    env.update({k: str(v) for k, v in extra.items()})
    return env


@pytest.fixture(scope="module")
def server():
    """A server with one randomly-credentialed app configured through env vars."""
    app = random_app()
    s = ResonanceServer(env=app_env(app, RESONANCE_MAX_MESSAGE_BYTES=8192), apps=[app]).start()
    yield s
    s.stop()
