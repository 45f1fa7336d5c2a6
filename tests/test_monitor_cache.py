"""The read cache: repeated reads hit, events invalidate exactly their tables, never stale."""

import concurrent.futures

from .delivery_tools import wait_for
from .monitor_tools import cache_result, metric_values, total

SALE = {"quantity": 2, "unit_price": 6.5, "shift": "morning", "recorded_by": "ana"}
TABLES = ("bread_types", "sales_logs", "shift_feedback")


def test_repeated_snapshots_and_polls_hit(start_server):
    server = start_server(workers=1, MONITOR_SECONDS="0")
    server.http.post(f"{server.url}/api/bread_types", json={"name": "Rye", "price": 5})
    session = server.session()
    snapshots = [session.get(f"{server.url}/api/bread_types?order=name.desc") for _ in range(5)]
    assert [cache_result(r) for r in snapshots] == ["miss"] + ["hit"] * 4
    assert len({r.content for r in snapshots}) == 1
    polls = [session.get(f"{server.url}/api/changes?topics=bread_types&cursor=0") for _ in range(5)]
    assert [cache_result(r) for r in polls] == ["miss"] + ["hit"] * 4
    values = metric_values(server.url)
    assert values["tidings_cache_hits_total{kind=snapshot}"] == 4
    assert values["tidings_cache_hits_total{kind=poll}"] == 4


def test_event_invalidates_exactly_its_tables_entries(start_server):
    server = start_server(workers=1, MONITOR_SECONDS="0")
    bread = server.http.post(f"{server.url}/api/bread_types", json={"name": "Rye", "price": 5})
    bread_id = bread.json()["row"]["id"]
    session = server.session()
    for table in TABLES:
        assert cache_result(session.get(f"{server.url}/api/{table}")) == "miss"
        cached = session.get(f"{server.url}/api/{table}")
        assert cache_result(cached) == "hit"
    before = total(metric_values(server.url), "tidings_cache_invalidations_total")
    created = session.post(f"{server.url}/api/sales_logs", json=SALE | {"bread_type_id": bread_id})
    # Which tables the write touched, as the log tells it (the demo may audit writes too).
    events = session.get(
        f"{server.url}/api/changes",
        params={"topics": ",".join(TABLES), "cursor": cached.json()["cursor"]},
    ).json()["events"]
    touched = {e["topic"] for e in events}
    assert touched == {"sales_logs"}, events
    # The hub invalidates the one cached sales_logs snapshot when the event reaches it.
    wait_for(
        lambda: total(metric_values(server.url), "tidings_cache_invalidations_total") == before + 1
    )
    for table in TABLES:
        response = session.get(f"{server.url}/api/{table}")
        assert cache_result(response) == ("miss" if table in touched else "hit"), table
    rows = session.get(f"{server.url}/api/sales_logs").json()["rows"]
    assert [row["id"] for row in rows] == [created.json()["row"]["id"]]


def test_no_stale_read_after_a_write_across_workers(start_server):
    server = start_server(workers=2, MONITOR_SECONDS="0")
    bread_id = server.http.post(
        f"{server.url}/api/bread_types", json={"name": "Rye", "price": 5}
    ).json()["row"]["id"]
    for quantity in range(1, 31):
        # Fresh connections, so reads land on either worker while the write's event is
        # still on its way to the other one.
        warm = server.http.get(f"{server.url}/api/sales_logs")
        assert warm.status_code == 200
        written = server.http.patch(
            f"{server.url}/api/bread_types/{bread_id}", json={"price": quantity}
        ).json()["row"]
        read = server.http.get(f"{server.url}/api/bread_types/{bread_id}").json()["row"]
        snapshot = server.http.get(f"{server.url}/api/bread_types").json()["rows"]
        polled = server.http.get(
            f"{server.url}/api/changes",
            params={"topics": "bread_types", "cursor": snapshot and 0},
        ).json()["events"]
        assert read["version"] == written["version"]
        assert [row["version"] for row in snapshot] == [written["version"]]
        assert polled[-1]["version"] == written["version"]


def test_a_long_poll_herd_shares_reads_of_the_log_and_wakes_to_the_ring(start_server):
    server = start_server(workers=1, MONITOR_SECONDS="0")
    head = server.http.get(f"{server.url}/api/bread_types").json()["cursor"]
    url = f"{server.url}/api/changes?topics=bread_types&wait=10&cursor={head}"
    before = metric_values(server.url)
    with concurrent.futures.ThreadPoolExecutor(20) as pool:
        waiting = [pool.submit(server.http.get, url, timeout=15) for _ in range(20)]
        wait_for(lambda: total(metric_values(server.url), "tidings_connections") == 20)
        created = server.http.post(
            f"{server.url}/api/bread_types", json={"name": "Spelt", "price": 4}
        )
        answers = [future.result().json() for future in waiting]
    event = created.json()["event"]
    assert all([e["id"] for e in a["events"]] == [event] for a in answers)

    def gained(name: str) -> float:
        return metric_values(server.url).get(name, 0.0) - before.get(name, 0.0)

    # Twenty first passes at the head share cached reads of the log; the twenty wake-ups
    # read the event from the ring in memory, none of them the log (counted within a second).
    wait_for(lambda: gained("tidings_replay_reads_total{source=ring}") >= 20)
    assert gained("tidings_cache_misses_total{kind=poll}") < 20
    # At most one read transaction per poll (the write's own, /metrics' and the monitor's
    # reads included).
    assert gained("tidings_read_transactions_total{}") <= 20
