"""The suite's own signing helpers against the Pusher documentation test vectors
(no server needed) — so a server failure is never a helper bug."""

import hashlib

from conftest import channel_auth, sign_query


def test_channel_auth_vector():
    assert channel_auth("278d425bdf160c739803", "7ad3773142a6692b25b8", "1234.1234", "private-foobar") == (
        "278d425bdf160c739803:58df8b0c36d6982b82c3ecf6b4662e34fe8c25bba48f5369f135bf843651c3a4")


def test_http_signature_vector():
    body = b'{"name":"foo","channels":["project-3"],"data":"{\\"some\\":\\"data\\"}"}'
    md5 = hashlib.md5(body).hexdigest()
    assert md5 == "ec365a775a4cd0599faeb73354201b6f"
    params = {"auth_key": "278d425bdf160c739803", "auth_timestamp": "1353088179", "auth_version": "1.0",
              "body_md5": md5}
    assert sign_query("POST", "/apps/3/events", params, "7ad3773142a6692b25b8") == (
        "da454824c97ba181a32ccc17a72625ba02771f50b50e1e7430e47a1f3f457e6c")
