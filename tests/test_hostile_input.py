"""Numbers and dates the database cannot hold are a 400 naming them, on every route."""

import pytest

from .api_helpers import SALE, assert_error, bread, nothing_written

YEAR_ZERO = "0001-01-01T00:00:00%2B01:00"
TOO_BIG = "99999999999999999999"
BELOW_INT64 = "-9223372036854775809"
ABOVE_INT64 = "9223372036854775808"


@pytest.fixture
def rye(client) -> dict:
    return bread(client)


@pytest.mark.parametrize(
    ("query", "code", "named"),
    [
        (f"created_at=gt.{YEAR_ZERO}", "invalid_filter", "created_at"),
        ("created_at=lt.9999-12-31T23:59:59-01:00", "invalid_filter", "created_at"),
        (f"created_at=in.({YEAR_ZERO})", "invalid_filter", "created_at"),
        (f"version=lte.{BELOW_INT64}", "invalid_filter", "version"),
        (f"quantity=eq.{ABOVE_INT64}", "invalid_filter", "quantity"),
        (f"offset={TOO_BIG}", "invalid_offset", "offset"),
    ],
)
def test_snapshot_parameters_out_of_range_are_400(client, rye, query, code, named):
    body = assert_error(client.get(f"/api/sales_logs?{query}"), 400, code)
    assert named in str(body["details"])


@pytest.mark.parametrize("route", ["/stream", "/api/changes"])
@pytest.mark.parametrize(
    "query",
    [
        f"sales_logs.created_at=gt.{YEAR_ZERO}",
        f"sales_logs.version=lte.{BELOW_INT64}",
        f"cursor={TOO_BIG}",
        f"cursor={ABOVE_INT64}",
    ],
)
def test_stream_and_poll_parameters_out_of_range_are_400(client, rye, route, query):
    # Unbuffered, so a stream that wrongly starts fails the test instead of running forever.
    with client.get(f"{route}?topics=sales_logs&{query}", buffered=False) as response:
        assert response.status_code == 400
        body = assert_error(response, 400)
    assert query.split("=")[0].removeprefix("sales_logs.") in str(body["details"])


def test_last_event_id_out_of_range_is_400(client):
    headers = {"Last-Event-ID": TOO_BIG}
    with client.get("/stream?topics=sales_logs", headers=headers, buffered=False) as response:
        assert response.status_code == 400
        assert_error(response, 400, "invalid_cursor")


@pytest.mark.parametrize("row_id", [ABOVE_INT64, TOO_BIG, "4294967296"])
@pytest.mark.parametrize("method", ["GET", "PATCH", "DELETE"])
def test_path_ids_out_of_range_are_400(app, client, rye, row_id, method):
    with nothing_written(app):
        response = client.open(f"/api/sales_logs/{row_id}", method=method, json={"quantity": 1})
        body = assert_error(response, 400, "invalid_id")
    assert body["details"]["id"] == row_id


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("created_at", "0001-01-01T00:00:00+01:00"),
        ("created_at", "9999-12-31T23:59:59.999-01:00"),
        ("quantity", 2**63),
        ("quantity", -(2**63) - 1),
        ("quantity", 2**31),
        ("unit_price", 10**30),
    ],
)
def test_write_values_out_of_range_are_400(app, client, rye, column, value):
    row = SALE | {"bread_type_id": rye["id"], column: value}
    with nothing_written(app):
        body = assert_error(client.post("/api/sales_logs", json=row), 400, "invalid_row")
        assert column in body["details"]["columns"]
        batch = client.post(
            "/api/batch", json={"ops": [{"method": "POST", "table": "sales_logs", "row": row}]}
        ).get_json()
        assert batch["results"][0]["status"] == 400
        assert column in batch["results"][0]["body"]["details"]["columns"]


@pytest.mark.parametrize("if_match", [TOO_BIG, f'"{ABOVE_INT64}"', "-1", '"0"'])
def test_if_match_out_of_range_is_400(app, client, rye, if_match):
    with nothing_written(app):
        response = client.patch(
            f"/api/bread_types/{rye['id']}", json={"price": 1}, headers={"If-Match": if_match}
        )
        assert_error(response, 400, "invalid_if_match")


@pytest.mark.parametrize(
    "op",
    [
        {"method": "PATCH", "table": "bread_types", "id": 2**63, "row": {"price": 1}},
        {"method": "DELETE", "table": "bread_types", "id": -(2**63)},
        {
            "method": "PATCH",
            "table": "bread_types",
            "id": 1,
            "row": {"price": 1},
            "if_match": 2**63,
        },
    ],
)
def test_batch_ids_and_versions_out_of_range_are_400(app, client, rye, op):
    with nothing_written(app):
        results = client.post("/api/batch", json={"ops": [op]}).get_json()["results"]
    assert results[0]["status"] == 400
    assert results[0]["body"]["error"] in ("invalid_id", "invalid_if_match")


def test_datetimes_before_the_year_1000_keep_four_digit_years(client, rye):
    row = SALE | {"bread_type_id": rye["id"], "created_at": "0070-02-24T13:09:18.5Z"}
    written = client.post("/api/sales_logs", json=row).get_json()["row"]
    assert written["created_at"] == "0070-02-24T13:09:18.500Z"
    found = client.get("/api/sales_logs?created_at=lt.0070-02-24T13:09:19Z").get_json()["rows"]
    assert [r["id"] for r in found] == [written["id"]]
