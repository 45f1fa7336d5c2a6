"""Bad input: a JSON error with the right status, a clear message, and nothing written."""

import pytest

from app import create_app

from .api_helpers import assert_error, bread, nothing_written, sale

GOOD_SALE = {"quantity": 1, "unit_price": 2, "shift": "morning", "recorded_by": "ana"}


@pytest.fixture
def seeded(client, app):
    """One bread and one sale, so that writes have something to hit."""
    bread_id = bread(client)["id"]
    return {"bread": bread_id, "sale": sale(client, bread_id)["id"]}


def check(response, status: int, code: str | None = None, names: str | None = None) -> dict:
    """Assert the error; when `names` is given, the message and details must name it."""
    body = assert_error(response, status, code)
    if names is not None:
        assert names in body["message"]
        assert names in str(body["details"])
    return body


def body_endpoints(seeded: dict) -> list[tuple[str, str]]:
    """Return every (method, path) that reads a JSON body."""
    return [
        ("POST", "/api/sales_logs"),
        ("PATCH", f"/api/sales_logs/{seeded['sale']}"),
        ("POST", "/api/batch"),
        ("POST", "/api/publish"),
    ]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/nope"),
        ("GET", "/api/nope/1"),
        ("POST", "/api/nope"),
        ("PATCH", "/api/nope/1"),
        ("DELETE", "/api/nope/1"),
    ],
)
def test_unknown_table(client, app, seeded, method, path):
    with nothing_written(app):
        response = client.open(path, method=method, json={"quantity": 1})
        check(response, 404, "unknown_table", names="nope")


@pytest.mark.parametrize(
    ("path", "params", "column"),
    [
        ("/api/sales_logs", {"colour": "eq.red"}, "colour"),
        ("/api/sales_logs", {"select": "id,colour"}, "colour"),
        ("/api/sales_logs", {"order": "colour.desc"}, "colour"),
        ("/api/changes", {"topics": "sales_logs", "sales_logs.colour": "eq.red"}, "colour"),
        ("/api/changes", {"topics": "sales_logs", "sales_logs.select": "colour"}, "colour"),
        ("/stream", {"topics": "sales_logs", "sales_logs.colour": "eq.red"}, "colour"),
    ],
)
def test_unknown_column_in_queries(client, app, seeded, path, params, column):
    with nothing_written(app):
        check(client.get(path, query_string=params), 400, "unknown_column", names=column)


@pytest.mark.parametrize("method", ["POST", "PATCH"])
def test_unknown_column_in_body(client, app, seeded, method):
    path = "/api/sales_logs" + (f"/{seeded['sale']}" if method == "PATCH" else "")
    body = GOOD_SALE | {"bread_type_id": seeded["bread"], "colour": "red"}
    with nothing_written(app):
        check(client.open(path, method=method, json=body), 400, "unknown_column", "colour")


@pytest.mark.parametrize(
    ("column", "expression", "names"),
    [
        ("quantity", "like.5", "like"),
        ("quantity", "eq.abc", "abc"),
        ("quantity", "gt.1.5", "1.5"),
        ("unit_price", "lt.cheap", "cheap"),
        ("unit_price", "lt.nan", "nan"),
        ("unit_price", "in.(1,inf)", "inf"),
        ("created_at", "gt.yesterday", "yesterday"),
        ("active", "eq.yes", "yes"),
        ("active", "is.maybe", "maybe"),
        ("quantity", "is.true", "quantity"),
        ("quantity", "in.1,2", "1,2"),
        ("quantity", "in.(1,x)", "x"),
        ("shift", "in.(a\nb)", "shift"),
        ("quantity", "5", "quantity"),
    ],
)
def test_bad_filters(client, app, seeded, column, expression, names):
    table = "bread_types" if column == "active" else "sales_logs"
    with nothing_written(app):
        snapshot = client.get(f"/api/{table}", query_string={column: expression})
        check(snapshot, 400, "invalid_filter", names=names)
        params = {"topics": table, f"{table}.{column}": expression}
        check(client.get("/api/changes", query_string=params), 400, "invalid_filter", names)


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"topics": "nope"}, "unknown_topic"),
        ({"topics": "sales_logs,nope"}, "unknown_topic"),
        ({"topics": "sales_logs", "bread_types.active": "is.true"}, "unknown_topic"),
        ({}, "missing_topics"),
        ({"topics": "sales_logs", "colour": "red"}, "unknown_parameter"),
    ],
)
def test_bad_subscriptions(client, app, params, code):
    with nothing_written(app):
        check(client.get("/api/changes", query_string=params), 400, code)
        check(client.get("/stream", query_string=params), 400, code)


def test_unknown_topic_names_it(client, app):
    body = check(client.get("/api/changes?topics=sales_log"), 400, "unknown_topic")
    assert "sales_log" in body["message"] and body["details"]["topics"] == ["sales_log"]


@pytest.mark.parametrize(
    "raw",
    [b"{", b"{'a': 1}", b"", b"\xff\xfe", b'{"a": 1} trailing', b"NaN"],
)
def test_malformed_json(client, app, seeded, raw):
    with nothing_written(app):
        for method, path in body_endpoints(seeded):
            response = client.open(path, method=method, data=raw, content_type="application/json")
            check(response, 400, "invalid_json")


@pytest.mark.parametrize("body", [[1, 2], "text", 5, False])
def test_body_must_be_an_object(client, app, seeded, body):
    with nothing_written(app):
        check(client.post("/api/sales_logs", json=body), 400, "invalid_body")


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("quantity", "2"),
        ("quantity", 1.5),
        ("quantity", True),
        ("quantity", 2**40),
        ("quantity", None),
        ("unit_price", "2.50"),
        ("unit_price", False),
        ("unit_price", 1e9),
        ("shift", 7),
        ("shift", "x" * 21),
        ("shift", ["morning"]),
        ("created_at", "soon"),
        ("created_at", 1700000000),
        ("bread_type_id", {"id": 1}),
    ],
)
def test_wrong_types_for_a_column(client, app, seeded, column, value):
    with nothing_written(app):
        body = GOOD_SALE | {"bread_type_id": seeded["bread"], column: value}
        error = check(client.post("/api/sales_logs", json=body), 400, "invalid_row", column)
        assert list(error["details"]["columns"]) == [column]
        patch = client.patch(f"/api/sales_logs/{seeded['sale']}", json={column: value})
        check(patch, 400, "invalid_row", column)


def test_missing_required_columns(client, app, seeded):
    with nothing_written(app):
        error = check(client.post("/api/sales_logs", json={"quantity": 1}), 400, "invalid_row")
        missing = {
            name for name, why in error["details"]["columns"].items() if why == "is required"
        }
        # recorded_by is not among them: the server sets it from who is signed in.
        assert missing == {"bread_type_id", "unit_price", "shift"}
        assert "created_at" not in error["details"]["columns"]


@pytest.mark.parametrize(
    ("column", "value"), [("id", 99), ("version", 7), ("updated_at", "2026-01-01T00:00:00Z")]
)
def test_managed_columns_cannot_be_written(client, app, seeded, column, value):
    with nothing_written(app):
        body = GOOD_SALE | {"bread_type_id": seeded["bread"], column: value}
        check(client.post("/api/sales_logs", json=body), 400, "invalid_row", column)
        patch = client.patch(f"/api/sales_logs/{seeded['sale']}", json={column: value})
        check(patch, 400, "invalid_row", column)


def test_foreign_key_violation_is_a_conflict(client, app, seeded):
    with nothing_written(app):
        body = GOOD_SALE | {"bread_type_id": 999}
        check(client.post("/api/sales_logs", json=body), 409, "constraint_violation")
        duplicate = {"name": "Rye", "price": 1}
        check(client.post("/api/bread_types", json=duplicate), 409, "constraint_violation")


@pytest.mark.parametrize(
    ("data", "content_type"),
    [
        (b'{"quantity": 1}', "text/plain"),
        (b"quantity=1", "application/x-www-form-urlencoded"),
        (b'{"quantity": 1}', None),
    ],
)
def test_non_json_body(client, app, seeded, data, content_type):
    with nothing_written(app):
        for method, path in body_endpoints(seeded):
            response = client.open(path, method=method, data=data, content_type=content_type)
            check(response, 415, "unsupported_media_type")


def test_body_over_one_mebibyte(client, app, seeded):
    huge = b'{"note": "' + b"x" * (1024 * 1024) + b'"}'
    with nothing_written(app):
        for path in ("/api/shift_feedback", "/api/batch", "/api/publish"):
            response = client.post(path, data=huge, content_type="application/json")
            check(response, 413)
    fits = {"shift": "morning", "note": "x" * 1000, "mood": 3}
    assert client.post("/api/shift_feedback", json=fits).status_code == 201


@pytest.mark.parametrize("cursor", ["abc", "-1", "1.5", "1_0", " 1", "\u0661", "0x1", ""])
def test_bad_cursor(client, app, seeded, cursor):
    if cursor == "":
        # No cursor at all: a poll from the head and a live stream (which, signed in, joins
        # presence: it writes events of its own).
        poll = client.get("/api/changes", query_string={"topics": "sales_logs", "cursor": ""})
        stream = client.get("/stream", query_string={"topics": "sales_logs", "cursor": ""})
        assert poll.status_code == 200
        assert stream.status_code == 200
        stream.close()
        return
    with nothing_written(app):
        poll = client.get("/api/changes", query_string={"topics": "sales_logs", "cursor": cursor})
        stream = client.get("/stream", query_string={"topics": "sales_logs", "cursor": cursor})
        check(poll, 400, "invalid_cursor")
        check(stream, 400, "invalid_cursor")
        headers = {"Last-Event-ID": cursor}
        check(client.get("/stream?topics=sales_logs", headers=headers), 400, "invalid_cursor")


@pytest.mark.parametrize(
    ("path", "name", "value"),
    [
        ("/api/changes", "limit", "0"),
        ("/api/changes", "limit", "100000"),
        ("/api/changes", "limit", "ten"),
        ("/api/changes", "wait", "-1"),
        ("/api/changes", "wait", "31"),
        ("/api/changes", "wait", "nan"),
        ("/api/changes", "wait", "soon"),
        ("/api/sales_logs", "limit", "-1"),
        ("/api/sales_logs", "limit", "10001"),
        ("/api/sales_logs", "offset", "-5"),
        ("/api/sales_logs", "order", "quantity.up"),
    ],
)
def test_out_of_range_parameters(client, app, seeded, path, name, value):
    with nothing_written(app):
        params = {"topics": "sales_logs", name: value} if path == "/api/changes" else {name: value}
        check(client.get(path, query_string=params), 400, names=name)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("PUT", "/api/sales_logs/1"),
        ("PATCH", "/api/sales_logs"),
        ("DELETE", "/api/sales_logs"),
        ("POST", "/api/changes"),
        ("DELETE", "/api/tables"),
        ("POST", "/stream"),
    ],
)
def test_unknown_method(client, app, seeded, method, path):
    with nothing_written(app):
        response = client.open(path, method=method, json={})
        check(response, 405, "method_not_allowed")
        assert "Allow" in response.headers


@pytest.mark.parametrize(
    "path", ["/nope", "/api", "/api/sales_logs/abc", "/api/sales_logs/1/more", "/api/sales_logs/-1"]
)
def test_unknown_route_is_json(client, path):
    response = client.get(path, headers={"Accept": "text/html"})
    check(response, 404)
    assert b"<html" not in response.get_data().lower()


def test_crash_is_json_without_a_stack_trace(app, client, caplog):
    def explode():
        raise RuntimeError("secret internal detail")

    app.add_url_rule("/api/_explode", "explode", explode)
    response = client.get("/api/_explode")
    body = check(response, 500, "internal_error")
    text = response.get_data(as_text=True)
    assert "secret internal detail" not in text and "Traceback" not in text
    assert "RuntimeError" not in text and body["details"] == {}
    assert "secret internal detail" in caplog.text


def test_unreachable_database_is_503(tmp_path, redis_server, caplog):
    missing = tmp_path / "no-such-dir" / "tidings.db"
    app = create_app(
        {
            "TESTING": True,
            "SQLALCHEMY_DATABASE_URI": f"sqlite:///{missing}",
            "REDIS_URL": redis_server.url,
        }
    )
    # The credential is looked up in the database, so even it meets the outage.
    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = "Bearer tdg_any"
    try:
        for response in (
            client.get("/api/bread_types"),
            client.post("/api/bread_types", json={"name": "Rye", "price": 1}),
            client.get("/api/changes?topics=bread_types"),
        ):
            check(response, 503, "database_unavailable")
            assert response.headers["Retry-After"] == "1"
            assert "no-such-dir" not in response.get_data(as_text=True)
    finally:
        app.extensions["tidings"].close()
    assert "unable to open database file" in caplog.text
