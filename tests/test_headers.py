"""Security headers on every response, a Content-Security-Policy on pages, and pages that
need nothing inline."""

import json
import re
from pathlib import Path

import requests

from blueprints.headers import CONTENT_SECURITY_POLICY

ROOT = Path(__file__).resolve().parents[1]
EVERY_RESPONSE = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}


def _has_every_response_header(response) -> None:
    for name, value in EVERY_RESPONSE.items():
        assert response.headers.get(name) == value, name


def test_pages_carry_the_policy(client, make_client):
    for path, who in (("/", client), ("/monitor", client), ("/", make_client())):
        response = who.get(path)
        assert response.status_code == 200
        assert response.mimetype == "text/html"
        assert response.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
        _has_every_response_header(response)
    assert b"signin-form" in make_client().get("/monitor").data


def test_the_policy_allows_no_inline_script_and_no_framing():
    directives = dict(d.split(" ", 1) for d in CONTENT_SECURITY_POLICY.split("; "))
    assert directives["script-src"] == "'self'"
    assert directives["style-src"] == "'self'"
    assert directives["frame-ancestors"] == "'none'"
    assert "unsafe" not in CONTENT_SECURITY_POLICY


def test_json_errors_and_static_files_carry_the_headers(client, make_client):
    for response in (
        client.get("/api/tables"),
        client.get("/api/nope"),
        make_client().get("/api/tables"),
        client.get("/static/style.css"),
        client.get("/healthz"),
    ):
        _has_every_response_header(response)
        assert "Content-Security-Policy" not in response.headers
        response.close()
    assert make_client().get("/api/tables").status_code == 401


def test_monitor_figures_are_a_json_block(client):
    html = client.get("/monitor").get_data(as_text=True)
    block = re.search(r'<script id="figures" type="application/json">(.*?)</script>', html, re.S)
    figures = json.loads(block.group(1))
    assert "health" in figures
    # tojson escapes what could end the block early.
    assert "<" not in block.group(1)


def test_templates_and_scripts_need_nothing_inline():
    """No inline script, event handler, style attribute or javascript: URL; JSON data blocks
    are rendered with tojson, never |safe."""
    for path in [*ROOT.glob("templates/*.html"), *ROOT.glob("static/**/*.js")]:
        text = path.read_text()
        assert not re.search(r"""\son[a-z]+\s*=\s*["'`$]""", text), path
        assert not re.search(r"""\sstyle\s*=\s*["'`$]""", text), path
        assert "javascript:" not in text, path
        assert "|safe" not in text.replace(" ", ""), path
        for tag in re.findall(r"<script\b[^>]*>", text):
            assert "src=" in tag or 'type="application/json"' in tag, (path, tag)


def test_streams_keep_their_headers(start_server):
    server = start_server()
    with requests.get(
        f"{server.url}/stream?topics=bread_types",
        headers=server.http.headers,
        stream=True,
        timeout=10,
    ) as response:
        assert response.status_code == 200
        assert response.headers["Content-Type"].startswith("text/event-stream")
        assert response.headers["Cache-Control"] == "no-cache"
        assert response.headers["X-Accel-Buffering"] == "no"
        assert "Content-Security-Policy" not in response.headers
        _has_every_response_header(response)
