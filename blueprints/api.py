"""The REST API over live tables: describe, snapshot, read, write, batch and publish.

Each route parses HTTP and renders; the engine (feed.snapshot, feed.writes) does the work.
"""

import hmac

from flask import Blueprint, Response, current_app, g, request
from werkzeug.exceptions import MethodNotAllowed

from feed import ApiError, runtime, writes
from feed.principal import Principal
from feed.snapshot import read_row, read_snapshot

from .http import int_arg, json_body, json_response

bp = Blueprint("api", __name__, url_prefix="/api")


def _fixed_route_methods(path: str) -> set[str]:
    """Return the methods of the fixed routes (such as /api/changes) at a path."""
    return {
        method
        for rule in current_app.url_map.iter_rules()
        if not rule.arguments and rule.rule == path
        for method in rule.methods or ()
    }


def _known_table(name: str) -> None:
    """Raise a 404 for an unknown table in the URL, or a 405 where it is a fixed route.

    POST /api/changes lands on the table routes: a wrong method, not an unknown table.
    """
    if name not in runtime().tables:
        methods = _fixed_route_methods(request.path)
        if methods:
            raise MethodNotAllowed(valid_methods=sorted(methods))
        runtime().registry.table(name)


@bp.get("/tables")
def tables():
    """Describe every live table."""
    return json_response({"tables": [t.describe() for t in runtime().tables.values()]})


@bp.get("/<name>")
def snapshot(name: str):
    """Return rows and the cursor they are consistent with (the log's head now)."""
    rt = runtime()
    _known_table(name)
    config = rt.config
    limit = int_arg(
        "limit", config["SNAPSHOT_LIMIT_DEFAULT"], low=0, high=config["SNAPSHOT_LIMIT_MAX"]
    )
    offset = int_arg("offset", 0, low=0)
    found = read_snapshot(rt, name, request.args, limit=limit, offset=offset, principal=g.principal)
    response = Response(
        found.body, mimetype="application/json", headers={"X-Cursor": str(found.cursor)}
    )
    response.set_etag(found.etag)
    # GET compares entity tags weakly (RFC 9110 13.1.2): W/"x" matches "x".
    if request.if_none_match.contains_weak(found.etag):
        response.status_code = 304
        response.set_data(b"")
    return response


@bp.get("/<name>/<int:row_id>")
def read_one(name: str, row_id: int):
    """Return one row."""
    _known_table(name)
    row = read_row(runtime(), name, row_id, principal=g.principal)
    return json_response({"row": row}, headers={"ETag": f'"{row["version"]}"'})


def _write_response(method: str, name: str, row_id: int | None, body=None) -> Response:
    """Apply one write from the URL, Idempotency-Key and If-Match headers, and a body."""
    status, result = writes.write(
        runtime(),
        method,
        name,
        row_id,
        body,
        if_match=writes.parse_version(request.headers.get("If-Match")),
        key=request.headers.get("Idempotency-Key"),
        principal=g.principal,
    )
    return json_response(result, status)


@bp.post("/<name>")
def create(name: str):
    """Insert a row."""
    _known_table(name)
    return _write_response("POST", name, None, json_body())


@bp.patch("/<name>/<int:row_id>")
def update(name: str, row_id: int):
    """Change some columns of a row."""
    _known_table(name)
    return _write_response("PATCH", name, row_id, json_body())


@bp.delete("/<name>/<int:row_id>")
def delete(name: str, row_id: int):
    """Delete a row."""
    _known_table(name)
    return _write_response("DELETE", name, row_id)


@bp.post("/batch")
def batch():
    """Apply several writes in order, each in its own transaction."""
    body = json_body()
    ops = body.get("ops") if isinstance(body, dict) else None
    if not isinstance(ops, list):
        raise ApiError(400, "invalid_body", 'The body must be {"ops": [...]}.')
    return json_response({"results": writes.batch(runtime(), ops, principal=g.principal)})


def _publisher() -> Principal | None:
    """Return who publishes: with PUBLISH_TOKEN set, only that server credential may, and it
    acts as the app itself; otherwise the signed-in user, held to the topic's policy."""
    token = runtime().config["PUBLISH_TOKEN"]
    if not token:
        return g.principal
    given = request.headers.get("Authorization", "").encode()
    if not hmac.compare_digest(given, f"Bearer {token}".encode()):
        raise ApiError(
            401,
            "unauthorized",
            "Publishing needs the publisher token as a Bearer credential.",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return None


@bp.post("/publish")
def publish():
    """Append an event to a custom topic."""
    publisher = _publisher()
    body = json_body()
    if not isinstance(body, dict) or not isinstance(body.get("topic"), str) or "data" not in body:
        raise ApiError(400, "invalid_body", 'The body must be {"topic": "...", "data": ...}.')
    status, result = writes.publish(
        runtime(),
        body["topic"],
        body["data"],
        key=request.headers.get("Idempotency-Key"),
        principal=publisher,
    )
    return json_response(result, status)
