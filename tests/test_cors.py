"""CORS_ORIGINS: preflights and response headers for the listed origins, nothing for others."""

import pytest

from blueprints.cors import ALLOW_HEADERS, EXPOSE_HEADERS

SHOP = "https://shop.example"
OTHER = "https://evil.example"
CORS_HEADERS = (
    "Access-Control-Allow-Origin",
    "Access-Control-Allow-Methods",
    "Access-Control-Allow-Headers",
    "Access-Control-Expose-Headers",
    "Access-Control-Allow-Credentials",
)


def _preflight(client, origin: str, method: str = "POST"):
    return client.options(
        "/api/sales_logs",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": "content-type, idempotency-key",
        },
    )


def _no_cors(response) -> None:
    for name in CORS_HEADERS:
        assert name not in response.headers, name


@pytest.fixture
def allowed(app):
    """The app with one allowed origin."""
    app.config["CORS_ORIGINS"] = [SHOP]
    return app


def test_no_list_means_no_cors_headers(client):
    response = client.get("/api/tables", headers={"Origin": SHOP})
    assert response.status_code == 200
    _no_cors(response)
    assert "Origin" not in response.headers.get("Vary", "")
    refused = _preflight(client, SHOP)
    assert refused.status_code == 403
    assert refused.get_json()["error"] == "origin_not_allowed"
    _no_cors(refused)


def test_an_allowed_origin_gets_its_preflight_answered(allowed, make_client):
    # A preflight carries no credential: it is answered before the sign-in check.
    response = _preflight(make_client(), SHOP, "PATCH")
    assert response.status_code == 204
    assert response.headers["Access-Control-Allow-Origin"] == SHOP
    assert "PATCH" in response.headers["Access-Control-Allow-Methods"]
    allowed_headers = response.headers["Access-Control-Allow-Headers"]
    assert allowed_headers == ALLOW_HEADERS
    for name in ("Content-Type", "Authorization", "If-Match", "Idempotency-Key", "X-CSRF-Token"):
        assert name in allowed_headers
    assert "Last-Event-ID" in allowed_headers and "X-Request-ID" in allowed_headers
    assert "Origin" in response.headers["Vary"]
    assert "Access-Control-Allow-Credentials" not in response.headers


def test_an_allowed_origin_reads_answers_and_their_headers(allowed, client):
    response = client.get("/api/sales_logs", headers={"Origin": SHOP})
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == SHOP
    assert response.headers["Access-Control-Expose-Headers"] == EXPOSE_HEADERS
    for name in ("X-Cursor", "ETag", "Retry-After", "X-Request-ID", "Server-Timing"):
        assert name in response.headers["Access-Control-Expose-Headers"]
    assert "Origin" in response.headers["Vary"]
    assert "Access-Control-Allow-Credentials" not in response.headers
    error = client.get("/api/nope", headers={"Origin": SHOP})
    assert error.status_code == 404
    assert error.headers["Access-Control-Allow-Origin"] == SHOP


def test_an_origin_not_listed_gets_nothing(allowed, client):
    response = client.get("/api/sales_logs", headers={"Origin": OTHER})
    assert response.status_code == 200
    _no_cors(response)
    assert "Origin" in response.headers["Vary"]
    refused = _preflight(client, OTHER)
    assert refused.status_code == 403
    assert refused.get_json() == {
        "error": "origin_not_allowed",
        "message": "This origin may not call the API from a browser; see CORS_ORIGINS.",
        "details": {"origin": OTHER},
    }
    _no_cors(refused)


def test_the_setting_is_read_from_the_environment(monkeypatch, tmp_path):
    import config

    monkeypatch.setenv("CORS_ORIGINS", f"{SHOP}, http://localhost:5173")
    assert config.from_environment(str(tmp_path))["CORS_ORIGINS"] == [
        SHOP,
        "http://localhost:5173",
    ]
    monkeypatch.delenv("CORS_ORIGINS")
    assert config.from_environment(str(tmp_path))["CORS_ORIGINS"] == []
