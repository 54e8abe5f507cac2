"""Credential paths with only the public app key (the one in every browser
bundle): the unsigned laravel-echo-server API refuses it, and the Python
SDK's /users/{id}/terminate_connections form still needs the signature."""

import json
import secrets

import requests

from conftest import app_env, random_app, uniq


def _post(server, path, body):
    return requests.post(server.base_url + path, data=json.dumps(body),
                         headers={"Content-Type": "application/json"}, timeout=5)


def test_public_key_is_not_an_api_credential(server):
    """A browser's key as ?auth_key= or Bearer publishes nothing: 403."""
    ch = uniq("private-victim-")
    body = {"channel": ch, "name": "forged", "data": {"x": 1}}
    r = _post(server, f"/apps/{server.app.id}/events?auth_key={server.app.key}", body)
    assert r.status_code == 403, f"{r.status_code} {r.text}"
    assert "extra_api_keys" in r.json()["error"]
    r = requests.get(f"{server.base_url}/apps/{server.app.id}/channels/presence-x/users",
                     headers={"Authorization": f"Bearer {server.app.key}"}, timeout=5)
    assert r.status_code == 403, f"{r.status_code} {r.text}"


def test_terminate_by_auth_key_needs_the_signature(server):
    """/users/{id}/terminate_connections finds the app by auth_key; the key alone is not enough."""
    with server.client() as victim:
        victim.signin("v1")
        r = _post(server, f"/users/v1/terminate_connections?auth_key={server.app.key}", {})
        assert r.status_code == 401, f"{r.status_code} {r.text}"
        victim.ping()  # still connected


def test_configured_api_key_works_and_public_key_is_refused(make_server):
    app = random_app()
    api_key = secrets.token_hex(16)
    s = make_server(env=app_env(app, RESONANCE_APP_EXTRA_API_KEYS=api_key), apps=[app])
    body = {"channel": "news", "name": "e", "data": {"x": 1}}
    r = _post(s, f"/apps/{app.id}/events?auth_key={app.key}", body)
    assert r.status_code == 403 and r.json() == {"error": "Unauthorized"}, r.text
    r = _post(s, f"/apps/{app.id}/events?auth_key={api_key}", body)
    assert r.status_code == 200, f"{r.status_code} {r.text}"
