"""The browser client's filter grammar in a real Chromium against a real gunicorn: the real
static/tidings/filters.js answers every shared case (tests/filter_cases.json) as the server
does, a live table keeps exactly the rows the server's filter selects, and a filter the server
refuses, connect() refuses too, with the server's message."""

import itertools
import json

import pytest
from playwright.sync_api import BrowserContext, Page

from feed.values import iso, parse_datetime
from tests.delivery_tools import wait_for
from tests.filter_cases import CASES, case_id, insert_rows
from tests.servers import http

from .conftest import wait_state

pytestmark = pytest.mark.browser

# A bare page on the server's origin that loads the real modules.
MODULE_PAGE = """<!doctype html>
<meta charset="utf-8"><title>Tidings filters</title>
<p id="status" data-state="connecting"></p>
<script type="module">
  import * as datetime from "/static/tidings/datetime.js";
  import * as filters from "/static/tidings/filters.js";
  import * as tidings from "/static/tidings.js";
  Object.assign(window, { datetime, filters, tidings });
  document.documentElement.dataset.loaded = "true";
</script>
"""


def open_modules(context: BrowserContext, url: str) -> Page:
    """Open a page on the server's origin with the client's modules on `window`."""
    address = f"{url}/filter-grammar"
    context.route(address, lambda route: route.fulfill(body=MODULE_PAGE, content_type="text/html"))
    page = context.new_page()
    page.goto(address)
    page.wait_for_selector("html[data-loaded]", state="attached")
    return page


@pytest.fixture
def server(app, start_server):
    """A one-worker server holding the shared rows; yields (url, ids by table)."""
    server = start_server(workers=1, HEARTBEAT_SECONDS="1")
    return server.url, insert_rows(app)


def server_ids(url: str, table: str, column: str, expression: str) -> list[int]:
    """Return the ids the server's snapshot selects with one filter."""
    params = [(column, expression), ("limit", "10000")]
    response = http(url).get(f"{url}/api/{table}", params=params, timeout=10)
    assert response.status_code == 200, response.text
    return [row["id"] for row in response.json()["rows"]]


def server_refusal(url: str, table: str, column: str, expression: str) -> dict:
    """Return the server's 400 to one filter, for a snapshot and for a poll (the same)."""
    snapshot = http(url).get(f"{url}/api/{table}", params={column: expression}, timeout=10)
    poll = http(url).get(
        f"{url}/api/changes", params={"topics": table, f"{table}.{column}": expression}, timeout=10
    )
    assert snapshot.status_code == poll.status_code == 400
    assert snapshot.json() == poll.json()
    return snapshot.json()


# Runs every case in the page: the tables' descriptions and rows come from the server.
CLIENT_ANSWERS = """async (cases) => {
  const { tables } = await (await fetch("/api/tables")).json();
  const describe = Object.fromEntries(tables.map((table) => [table.name, table]));
  const rows = {};
  for (const name of new Set(cases.map((c) => c.table))) {
    rows[name] = (await (await fetch(`/api/${name}?limit=10000`)).json()).rows;
  }
  return cases.map((c) => {
    try {
      const filter = { [c.column]: c.filter };
      const table = describe[c.table];
      const selected = rows[c.table].filter((row) => filters.matches(row, filter, table));
      return selected.map((row) => row.id);
    } catch (error) {
      return { error: error.code, message: error.message, details: error.details };
    }
  });
}"""


def client_answers(context: BrowserContext, url: str, cases: list[dict]) -> list[tuple]:
    """Run cases through the real filters.js in a page; pair each case with its answer."""
    page = open_modules(context, url)
    return list(zip(cases, page.evaluate(CLIENT_ANSWERS, cases), strict=True))


def test_the_client_selects_the_rows_the_server_selects(server, context):
    url, ours = server
    for case, client in client_answers(context, url, CASES["cases"]):
        by_server = server_ids(url, case["table"], case["column"], case["filter"])
        shared = [ours[case["table"]][n] for n in case["rows"]]
        mine = [i for i in client if i in ours[case["table"]]]
        assert (client, mine) == (by_server, shared), case_id(case)


def test_the_client_refuses_what_the_server_refuses_with_its_message(server, context):
    url, _ = server
    for case, client in client_answers(context, url, CASES["refused"]):
        body = server_refusal(url, case["table"], case["column"], case["filter"])
        assert (body["error"], body["message"]) == (case["error"], case["message"])
        assert client == body, case_id(case)


# Years below 1000 are left out: the server writes them unpadded ("1-01-01T…", strftime's %Y).
DATES = ["2026-01-01", "20260101", "2026-W01-1", "2026W011", "2026-W01", "2020-W53-7", "2026-W53-1"]
DATES += [
    "2024-02-29",
    "2026-02-29",
    "9999-12-31",
    "2026-1-01",
    "2026-13-01",
    "2026-12",
    "2026-W00-1",
]
TIMES = ["", "T09", "T0930", "T09:30", "T09:30:15", "T093015", "T09301555", "T09.5", "T09:30:15.5"]
TIMES += ["T09:30:15,123", "T09:30:15.123456789", "T23:59:59.9999", " 09:30", "x09:30", "T24:00"]
TIMES += ["T09:60", "T09:30:60", "T", "T09:3", "T9:30", "T09:30:15.", "T09:30:"]
GAPS = ["", ".", " ", "x"]
ZONES = ["Z", "+01:00", "-05:30", "+0100", "+01", "+23:59", "+24:00", "-00:00", "+01:00:30"]
ZONES += ["+01:30:00.5", "+013000.5", "+01:60", "+1", "ZZ", "+01:30:"]


def datetime_texts() -> list[str]:
    """Return ISO 8601 datetimes, odd ones included, in the forms Python's parser knows."""
    texts = [d + t for d, t in itertools.product(DATES, TIMES)]
    zoned = itertools.product(DATES, [t for t in TIMES if t], GAPS, ZONES)
    return texts + ["".join(parts) for parts in zoned]


def server_reading(text: str) -> str | None:
    """Return a datetime filter value as the server reads it, or None if it refuses it."""
    try:
        return iso(parse_datetime(text))
    # Past year 9999 the server fails harder than a refusal; the client refuses.
    except (ValueError, OverflowError):
        return None


def test_datetimes_read_as_the_server_reads_them(context, dashboard):
    page = open_modules(context, dashboard.url)
    texts = datetime_texts()
    readings = page.evaluate(
        """texts => texts.map((text) => {
             try { return datetime.parseDatetime(text); } catch { return null; }
           })""",
        texts,
    )
    differ = [
        (text, mine, server_reading(text))
        for text, mine in zip(texts, readings, strict=True)
        if mine != server_reading(text)
    ]
    assert differ == []
    # Plenty of both: forms the server reads, and forms it refuses.
    assert 0.1 < sum(reading is not None for reading in readings) / len(texts) < 0.9


# connect() with the given options, and what became of it.
CONNECT = """async (options) => {
  try {
    const feed = tidings.connect(options);
    const table = feed.table(options.topics[0], options.table ?? {});
    const errors = [];
    feed.on("error", (e) => errors.push(e.source));
    const refusal = (e) => ({ error: e.code, message: e.message });
    const outcome = (promise) => promise.then(() => "ready", refusal);
    const [ready, tableReady] = await Promise.all([outcome(feed.ready), outcome(table.ready)]);
    return { ready, tableReady, state: feed.status.state, errors };
  } catch (error) {
    return { thrown: { error: error.code, message: error.message, name: error.name } };
  }
}"""


def refusal_of(url: str, params: dict) -> dict:
    """Return the server's 400 to a poll with these parameters, as the client reports it."""
    response = http(url).get(f"{url}/api/changes", params=params, timeout=10)
    assert response.status_code == 400, response.text
    return {"error": response.json()["error"], "message": response.json()["message"]}


@pytest.mark.parametrize(
    ("column", "expression"),
    [
        ("quantity", "xx.2"),
        ("shift", "in.morning"),
        ("shift", "in.(a\nb)"),
        ("quantity", "is.maybe"),
    ],
)
def test_connect_throws_at_once_on_a_filter_that_breaks_the_grammar(
    server, context, column, expression
):
    url, _ = server
    page = open_modules(context, url)
    topics = ["sales_logs"]
    options = {"topics": topics, "filters": {"sales_logs": {column: expression}}}
    requests_made = []
    page.on("request", lambda request: requests_made.append(request.url))
    outcome = page.evaluate(CONNECT, options)
    params = {"topics": "sales_logs", f"sales_logs.{column}": expression}
    assert outcome == {"thrown": {**refusal_of(url, params), "name": "FilterError"}}
    assert requests_made == []


@pytest.mark.parametrize(
    ("topics", "filters"),
    [
        (["sales_logs"], {"sales_logs": {"quantity": "eq.2.0"}}),
        (["sales_logs"], {"sales_logs": {"created_at": ["gte.2026-01-01", "lt.2026-02-30"]}}),
        (["sales_logs", "bread_types"], {"bread_types": {"naïve": "eq.1"}}),
        # Only the server knows this one: the topic is not subscribed.
        (["sales_logs"], {"bread_types": {"active": "is.true"}}),
    ],
)
def test_connect_refuses_a_filter_the_server_refuses(server, context, topics, filters):
    url, _ = server
    page = open_modules(context, url)
    params = {"topics": ",".join(topics)}
    for topic, filter_ in filters.items():
        for column, tests in filter_.items():
            params[f"{topic}.{column}"] = tests
    refusal = refusal_of(url, params)
    requests_made = []
    page.on("request", lambda request: requests_made.append(request.url))
    outcome = page.evaluate(CONNECT, {"topics": topics, "filters": filters})
    assert outcome == {
        "ready": refusal,
        "tableReady": refusal,
        "state": "refused",
        "errors": ["refused"],
    }
    # Refused for good: no stream, and no retries of the request the server refused.
    page.wait_for_timeout(1000)
    [asked] = [u for u in requests_made if "/stream" in u or "/api/changes" in u]
    assert "/api/changes?" in asked and "wait=0" in asked


def test_connect_passes_each_topic_s_priority_and_throws_on_an_unknown_one(server, context):
    url, _ = server
    page = open_modules(context, url)
    asked = []
    page.on("request", lambda request: asked.append(request.url))
    options = {"topics": ["sales_logs", "bread_types"], "priority": {"bread_types": "low"}}
    assert page.evaluate(CONNECT, options)["ready"] == "ready"
    [stream] = [u for u in asked if "/stream?" in u]
    assert "bread_types.priority=low" in stream and "sales_logs.priority" not in stream
    thrown = page.evaluate(CONNECT, options | {"priority": {"bread_types": "urgent"}})
    assert thrown["thrown"]["message"] == "bread_types priority must be high, normal, low."


def test_a_table_filter_the_server_refuses_rejects_that_table(server, context):
    url, _ = server
    page = open_modules(context, url)
    params = {"topics": "sales_logs", "sales_logs.created_at": "gte.yesterday"}
    options = {"topics": ["sales_logs"], "table": {"filter": {"created_at": "gte.yesterday"}}}
    outcome = page.evaluate(CONNECT, options)
    assert (outcome["ready"], outcome["tableReady"]) == ("ready", refusal_of(url, params))
    params = {"topics": "sales_logs", "sales_logs.quantity": "xx.1"}
    options = {"topics": ["sales_logs"], "table": {"filter": {"quantity": "xx.1"}}}
    outcome = page.evaluate(CONNECT, options)
    assert outcome == {"thrown": {**refusal_of(url, params), "name": "FilterError"}}


# A live table with filters the old client got wrong, and a record of its rows.
LIVE_PAGE = """<!doctype html>
<meta charset="utf-8"><title>Tidings live filter</title>
<p id="status" data-state="connecting"></p>
<script type="module">
  import { connect } from "/static/tidings.js";
  const feed = connect(%s);
  const table = feed.table("sales_logs");
  Object.assign(window, { feed, table });
  feed.on("status", ({ state }) => { document.querySelector("#status").dataset.state = state; });
  table.ready.then(() => { document.documentElement.dataset.loaded = "true"; });
</script>
"""
LIVE_FILTER = {
    "created_at": ["gte.2026-12-01T08:53:02Z", "lte.2026-12-01T10:00:00.000999+01:00"],
    "shift": ['in.(morning,"late, night","a,b")'],
}


def test_a_live_table_keeps_the_rows_the_server_selects(server, context):
    url, ours = server
    options = {"topics": ["sales_logs"], "filters": {"sales_logs": LIVE_FILTER}, "heartbeat": 1}
    address = f"{url}/live-filter"
    html = LIVE_PAGE % json.dumps(options)
    context.route(address, lambda route: route.fulfill(body=html, content_type="text/html"))
    page = context.new_page()
    page.goto(address)
    page.wait_for_selector("html[data-loaded]", state="attached")
    wait_state(page, "live")

    def selected() -> list[int]:
        params = [(column, test) for column, tests in LIVE_FILTER.items() for test in tests]
        response = http(url).get(f"{url}/api/sales_logs", params=params, timeout=10)
        return [row["id"] for row in response.json()["rows"]]

    def shown() -> list[int]:
        return page.evaluate("table.rows.map((row) => row.id)")

    sales = ours["sales_logs"]
    assert shown() == selected() == [sales[5], sales[6]]
    bread = ours["bread_types"][0]
    sale = {"bread_type_id": bread, "quantity": 1, "unit_price": 1, "recorded_by": "t"}
    for shift, created in [
        ("late, night", "2026-12-01T08:53:02.000Z"),  # the first instant the filter takes
        ("morning", "2026-12-01T09:00:00.000+01:00"),  # 08:00 UTC: before it
        ("a,b", "2026-12-01T09:00:00.000999Z"),  # stored as 09:00:00.000, the last instant it takes
        ("night", "2026-12-01T08:59:00Z"),
    ]:
        body = sale | {"shift": shift, "created_at": created}
        assert http(url).post(f"{url}/api/sales_logs", json=body, timeout=10).status_code == 201
    moved = {"created_at": "2026-12-01T08:53:01.999Z"}
    assert http(url).patch(f"{url}/api/sales_logs/{sales[6]}", json=moved, timeout=10).ok
    wait_for(lambda: shown() == selected(), 15, "the live table to hold the server's rows")
    assert len(shown()) == 3


ALERTS = [
    {"level": 3, "kind": "a"},
    {"level": 5, "kind": "b"},
    {"kind": "c"},
    {"level": True, "kind": "d"},
    {"level": 1.0, "kind": "e"},
    {"level": "5", "kind": "f"},
    {"level": [1], "kind": "g"},
    {"level": None, "kind": "h, i"},
]
CUSTOM_FILTERS = ["level=gte.4", "level=is.null", "kind=in.(a,c)", "kind=eq.[1]", "level=eq.1"]
CUSTOM_FILTERS += ["level=in.([1],3)", "level=eq.true", "level=neq.5", 'level=eq."5"', "level=lt.b"]
CUSTOM_FILTERS += [
    "kind=gt.b",
    'level=in.(1,"5")',
    "level=is.true",
    'kind=in.("h, i")',
    "level=eq.null",
]
# Names every JavaScript object inherits: no row holds them unless its data says so.
CUSTOM_FILTERS += ["constructor=is.null", "constructor=neq.1", "toString=eq.1"]


def test_custom_topic_filters_read_json_scalars_as_the_server_does(start_server, context):
    url = start_server(workers=1, TOPICS="alerts").url
    for data in ALERTS:
        body = {"topic": "alerts", "data": data}
        assert http(url).post(f"{url}/api/publish", json=body, timeout=10).status_code == 201
    events = changes_of(url, {})
    assert len(events) == len(ALERTS)
    page = open_modules(context, url)
    for text in CUSTOM_FILTERS:
        column, expression = text.split("=", 1)
        by_server = [e["id"] for e in changes_of(url, {f"alerts.{column}": expression})]
        mine = page.evaluate(
            "([events, filter]) => events.filter((e) => filters.matches(e.row, filter, null))"
            ".map((e) => e.id)",
            [events, {column: expression}],
        )
        assert mine == by_server, text


def changes_of(url: str, filters: dict) -> list[dict]:
    """Return the events of the alerts topic that a poll with these filters receives."""
    params = {"topics": "alerts", "cursor": 0, **filters}
    response = http(url).get(f"{url}/api/changes", params=params, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()["events"]
