"""/openapi.json: every route is described, and the app keeps to its description.

schemathesis generates requests from the document and sends them through the WSGI app as a
signed-in admin: no 5xx, every 4xx is the protocol's JSON error, every answer fits.
"""

import re

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from blueprints.openapi import document, documented_methods
from feed import runtime
from identity import tokens
from models.seed import seed

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
# Streams last as long as their client stays: the SSE routes are described, not fuzzed.
ENDLESS = r"^/stream$|^/monitor/selftest$"
# Bounded: a few examples per operation and mode, no shrinking, no example database.
EXAMPLES = settings(
    max_examples=4,
    deadline=None,
    database=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)


def test_every_route_is_described(app):
    """Every method of every url_map rule has an operation (per live table for <name>)."""
    described = app.test_client().get("/openapi.json").get_json()
    tables = list(app.extensions["tidings"].tables)
    for rule in app.url_map.iter_rules():
        path = re.sub(r"<(?:[^:>]+:)?([^>]+)>", r"{\1}", rule.rule)
        paths = [path.replace("{name}", t) for t in tables] if "name" in rule.arguments else [path]
        for each in paths:
            for method in documented_methods(rule):
                assert method.lower() in described["paths"].get(each, {}), (rule.rule, method)


def test_document_is_valid_openapi_3_1(app):
    """The document passes the OpenAPI 3.1 meta-schema (the one schemathesis ships)."""
    _schema(app).validate()


def test_a_route_without_a_description_is_an_error(app):
    app.add_url_rule("/extra", "extra", lambda: "extra")
    with app.app_context(), pytest.raises(LookupError, match="extra"):
        document(app)


def test_document_is_open_and_describes_tables(make_client, app):
    """Nobody may read the contract; it carries the live tables' columns and constraints."""
    response = make_client().get("/openapi.json")
    assert response.status_code == 200
    document = response.get_json()
    assert document["openapi"].startswith("3.1")
    row = document["components"]["schemas"]["sales_logs"]["properties"]
    assert row["shift"]["maxLength"] == 20
    assert row["quantity"]["maximum"] == 2**31 - 1
    assert row["unit_price"]["exclusiveMaximum"] == 10**8
    assert row["id"]["readOnly"] and row["version"]["readOnly"] and row["updated_at"]["readOnly"]
    assert row["recorded_by"]["readOnly"]
    insert = document["components"]["schemas"]["sales_logs_insert"]
    assert {"id", "version", "updated_at", "recorded_by"}.isdisjoint(insert["properties"])
    assert set(insert["required"]) == {"bread_type_id", "quantity", "unit_price", "shift"}
    assert {"401", "403", "429"} <= set(document["paths"]["/api/sales_logs"]["post"]["responses"])
    assert set(document["components"]["securitySchemes"]) == {
        "bearer",
        "session",
        "csrf",
        "access_token",
    }


def _token(app, admin) -> str:
    """Issue the admin a token for one case: a case may revoke the tokens it finds."""
    with app.app_context(), runtime().write() as session:
        return tokens.issue(session, admin.user_id, "schemathesis", 3600)[1]


def _check(app, admin, case) -> None:
    """Send a case as the admin and hold its answer to the document and the protocol."""
    headers = {"Authorization": f"Bearer {_token(app, admin)}"}
    response = case.call_and_validate(headers=headers, checks=CHECKS)
    if response.status_code >= 400:
        content_type = {k.lower(): v for k, v in response.headers.items()}["content-type"]
        assert content_type[0].startswith("application/json")
        assert {"error", "message", "details"} <= set(response.json())


def _schema(app):
    """Return the app's own document, loaded through the WSGI app, without the streams."""
    return schemathesis.openapi.from_wsgi("/openapi.json", app).exclude(path_regex=ENDLESS)


@pytest.fixture
def bakery(app):
    """The app with the demo's rows, so generated ids meet real rows to change and delete."""
    with app.app_context():
        seed()
    return app


def test_app_keeps_to_its_document(bakery, admin):
    """Valid requests to every operation: no 5xx, JSON errors, answers that fit."""
    app = bakery
    operations = [result.ok() for result in _schema(app).get_all_operations()]
    assert len(operations) > 40
    for operation in operations:
        run = given(case=operation.as_strategy())(lambda case: _check(app, admin, case))
        EXAMPLES(run)()


def test_app_refuses_bad_requests_with_json(bakery, admin):
    """Invalid requests across the operations (some have no input to spoil): no 5xx, and
    the protocol's JSON error."""
    app = bakery
    cases = _schema(app).as_strategy(GenerationMode.NEGATIVE)
    run = given(case=cases)(lambda case: _check(app, admin, case))
    settings(EXAMPLES, max_examples=150)(run)()
