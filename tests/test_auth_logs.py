"""No password, token, cookie or access_token ever reaches a log line of a real server."""

import requests

from identity.sessions import COOKIE

from .delivery_tools import wait_for
from .identities import PASSWORD


def test_no_secret_in_any_log_line(start_server):
    # A heartbeat each second: the server notices the closed stream and logs it soon.
    server = start_server(LOG_LEVEL="INFO", HEARTBEAT_SECONDS="1")
    browser = requests.Session()
    signed_in = browser.post(
        f"{server.url}/api/auth/login", json={"username": "admin", "password": PASSWORD}
    )
    assert signed_in.status_code == 200
    csrf = {"X-CSRF-Token": signed_in.json()["csrf_token"]}
    wrong = requests.post(
        f"{server.url}/api/auth/login", json={"username": "admin", "password": "guess-me-9"}
    )
    assert wrong.status_code == 401
    token = browser.post(f"{server.url}/api/auth/tokens", json={"name": "x"}, headers=csrf).json()
    by_token = {"Authorization": f"Bearer {token['token']}"}
    stream = requests.post(f"{server.url}/api/auth/stream-token", headers=by_token).json()
    polled = requests.get(
        f"{server.url}/api/changes",
        params={"topics": "bread_types", "access_token": stream["token"]},
        timeout=10,
    )
    assert polled.status_code == 200
    with requests.get(
        f"{server.url}/stream",
        params={"topics": "bread_types", "access_token": stream["token"]},
        stream=True,
        timeout=10,
    ) as opened:
        assert opened.status_code == 200
    refused = requests.get(
        f"{server.url}/api/bread_types", headers={"Authorization": "Bearer tdg_leak"}
    )
    assert refused.status_code == 401
    browser.post(f"{server.url}/api/auth/logout", headers=csrf)
    # The requests were logged: the test reads the lines it means to check.
    output = wait_for(
        lambda: '"event":"stream.close"' in server.output() and server.output(),
        what="the stream's close line",
    )
    assert '"path":"/api/changes"' in output and '"path":"/api/auth/logout"' in output
    secrets = {
        "password": PASSWORD,
        "wrong password": "guess-me-9",
        "session cookie": signed_in.cookies[COOKIE],
        "csrf token": csrf["X-CSRF-Token"],
        "api token": token["token"],
        "admin token": server.token,
        "stream token": stream["token"],
        "refused bearer": "tdg_leak",
    }
    for name, secret in secrets.items():
        assert secret not in output, name
    assert "access_token" not in output
