"""The feed on PostgreSQL: gapless ids in commit order across nodes, consistent snapshots."""

import threading

import pytest

from .api_helpers import log_start
from .servers import http
from .sse import SseStream

pytestmark = pytest.mark.postgres


@pytest.fixture
def database_url(postgres_url):
    """Run this module's app and servers on PostgreSQL."""
    return postgres_url


def _write_many(base_url: str, bread_id: int, count: int, errors: list) -> None:
    """Record sales and bump the bread's price, as concurrent tills would."""
    for n in range(count):
        sale = {
            "bread_type_id": bread_id,
            "quantity": 1 + n % 3,
            "unit_price": 4.0,
            "shift": "morning",
            "recorded_by": "till",
        }
        responses = [
            http(base_url).post(f"{base_url}/api/sales_logs", json=sale, timeout=10),
            http(base_url).patch(
                f"{base_url}/api/bread_types/{bread_id}", json={"price": 4 + n}, timeout=10
            ),
        ]
        errors.extend(r.text for r in responses if r.status_code >= 300)


def _logged_ids(app, after: int = 0) -> list[int]:
    """Read every id in the events table, whatever its topic."""
    from feed import runtime

    with app.app_context(), runtime().read() as conn:
        return [event.id for event in runtime().log.read(conn, after, limit=100_000)]


def test_two_nodes_share_one_gapless_ordered_log(app, start_server):
    node_a = start_server(workers=1)
    node_b = start_server(workers=1)
    breads = [
        node_a.http.post(f"{node_a.url}/api/bread_types", json={"name": f"B{i}", "price": 3}).json()
        for i in range(4)
    ]
    start = breads[-1]["event"]
    errors: list = []
    with SseStream(node_b.url, f"topics=sales_logs,bread_types&cursor={start}") as stream:
        stream.until("ready")
        writers = [
            threading.Thread(target=_write_many, args=(node.url, bread["row"]["id"], 25, errors))
            for node, bread in zip([node_a, node_b, node_a, node_b], breads, strict=True)
        ]
        for writer in writers:
            writer.start()
        for writer in writers:
            writer.join(timeout=60)
        assert errors == []
        expected = 4 * 25 * 2
        ids = [int(stream.until("change")[-1].id) for _ in range(expected)]
    all_ids = _logged_ids(app, after=start)
    assert all_ids == list(range(start + 1, start + len(all_ids) + 1)), "the log has a hole"
    logged = node_a.http.get(
        f"{node_a.url}/api/changes",
        params={"topics": "sales_logs,bread_types", "cursor": start, "limit": 1000},
    ).json()["events"]
    assert [e["id"] for e in logged] == ids
    # Versions of each bread rise by one per event: ids follow commit order.
    for bread in breads:
        versions = [
            e["version"]
            for e in logged
            if e["topic"] == "bread_types" and e["pk"] == bread["row"]["id"]
        ]
        assert versions == list(range(2, 27))


def test_rolled_back_write_consumes_no_id(app, client):
    from feed import runtime
    from models import BreadType

    before = len(_logged_ids(app))
    first = client.post("/api/bread_types", json={"name": "Rye", "price": 5}).json["event"]
    with app.app_context():
        with pytest.raises(RuntimeError), runtime().write() as session:
            session.add(BreadType(name="Ghost", price=1))
            session.flush()
            raise RuntimeError("abandon the transaction")
    client.post("/api/bread_types", json={"name": "Spelt", "price": 6})
    ids = _logged_ids(app)
    assert ids == list(range(log_start(app) + 1, log_start(app) + len(ids) + 1)), (
        "the rolled-back write left a hole"
    )
    assert ids[before] == first
    names = [row["name"] for row in client.get("/api/bread_types").json["rows"]]
    assert names == ["Rye", "Spelt"]


def test_snapshot_and_changes_rebuild_the_table_under_writes(start_server):
    node = start_server(workers=2)
    bread = node.http.post(f"{node.url}/api/bread_types", json={"name": "Rye", "price": 5}).json()
    errors: list = []
    writer = threading.Thread(target=_write_many, args=(node.url, bread["row"]["id"], 40, errors))
    writer.start()
    snapshot = node.http.get(f"{node.url}/api/sales_logs").json()
    writer.join(timeout=60)
    assert errors == []
    rows = {row["id"]: row for row in snapshot["rows"]}
    changes = node.http.get(
        f"{node.url}/api/changes",
        params={"topics": "sales_logs", "cursor": snapshot["cursor"], "limit": 1000},
    ).json()["events"]
    for event in changes:
        assert event["pk"] not in rows or event["op"] != "INSERT", "an event was repeated"
        if event["op"] == "DELETE":
            rows.pop(event["pk"])
        else:
            rows[event["pk"]] = event["row"]
    final = node.http.get(f"{node.url}/api/sales_logs").json()["rows"]
    assert sorted(rows.values(), key=lambda r: r["id"]) == final
    assert len(final) == 40


@pytest.mark.parametrize(
    ("path", "body"),
    [
        # No unique column: only the key can stop a second row.
        ("/api/shift_feedback", {"shift": "morning", "note": "raced", "mood": 3}),
        ("/api/publish", {"topic": "alerts", "data": {"user": "ana"}}),
    ],
)
def test_concurrent_repeats_of_one_key_write_once_and_answer_alike(app, start_server, path, body):
    server = start_server(workers=2, TOPICS="alerts")
    barrier = threading.Barrier(8)
    answers: list = []

    def send() -> None:
        barrier.wait(timeout=10)
        response = server.http.post(
            server.url + path, json=body, headers={"Idempotency-Key": "race-1"}, timeout=10
        )
        answers.append((response.status_code, response.json()))

    senders = [threading.Thread(target=send) for _ in range(8)]
    for sender in senders:
        sender.start()
    for sender in senders:
        sender.join(timeout=30)
    assert len(answers) == 8
    assert {status for status, _ in answers} == {201}
    assert len({answer["event"] for _, answer in answers}) == 1
    from feed import runtime

    with app.app_context(), runtime().read() as conn:
        mutations = [e.data["mutation"] for e in runtime().log.read(conn, 0, limit=1000)]
    topic_events = mutations.count("race-1")
    # A table write also appends its audit row, carrying the same key.
    assert topic_events == (2 if path == "/api/shift_feedback" else 1)
