"""Integers wider than any column, anywhere a client may send one: the protocol's JSON error,
never a database or encoder failure."""

HUGE = "99999999999999999999999"


def test_wide_query_integers_are_bad_input(client):
    for path, code in (
        (f"/api/changes?topics=sales_logs&cursor={HUGE}", "invalid_cursor"),
        ("/api/changes?topics=sales_logs&cursor=9223372036854775808", "invalid_cursor"),
        (f"/api/sales_logs?offset={HUGE}", "invalid_offset"),
    ):
        response = client.get(path)
        assert response.status_code == 400, path
        assert response.get_json()["error"] == code
    for path in (
        f"/api/sales_logs?id=eq.{HUGE}",
        f"/api/changes?topics=sales_logs&sales_logs.quantity=gt.{HUGE}",
    ):
        response = client.get(path)
        assert response.status_code == 400, path
        assert response.get_json()["details"]["value"] == f"{HUGE}"


def test_the_widest_integers_still_filter(client):
    assert client.get(f"/api/sales_logs?quantity=lt.{2**63 - 1}").status_code == 200


def test_wide_row_ids_are_bad_input_and_wide_token_ids_name_nothing(client):
    for method in ("get", "patch", "delete"):
        kwargs = {"json": {"quantity": 1}} if method == "patch" else {}
        response = getattr(client, method)(f"/api/sales_logs/{HUGE}", **kwargs)
        assert response.status_code == 400, method
        body = response.get_json()
        assert body["error"] == "invalid_id"
        assert body["details"] == {"table": "sales_logs", "id": HUGE}
    assert client.get(f"/api/sales_logs/{2**31}").status_code == 400
    assert client.delete(f"/api/auth/tokens/{HUGE}").status_code == 404
    batch = client.post(
        "/api/batch", json={"ops": [{"method": "DELETE", "table": "sales_logs", "id": 2**40}]}
    )
    assert batch.get_json()["results"][0]["status"] == 400
