"""The REST API over live tables: describe, snapshot, read, write, batch and publish."""

import hashlib
import hmac
from collections.abc import Callable
from typing import Any

import orjson
import sqlalchemy as sa
from flask import Blueprint, Response, current_app, request
from werkzeug.exceptions import MethodNotAllowed

from feed import ApiError, runtime
from feed.filters import parse_select, parse_snapshot_filters
from feed.live import LiveTable

from .http import int_arg, json_body, json_response, parse_int

bp = Blueprint("api", __name__, url_prefix="/api")

WRITE_METHODS = ("POST", "PATCH", "DELETE")


def _fixed_route_methods(path: str) -> set[str]:
    """Return the methods of the fixed routes (such as /api/changes) at a path."""
    return {
        method
        for rule in current_app.url_map.iter_rules()
        if not rule.arguments and rule.rule == path
        for method in rule.methods or ()
    }


def _table(name: str) -> LiveTable:
    """Return a live table by name, or raise a 404 naming it.

    POST /api/changes lands on the table routes: a wrong method, not an unknown table.
    """
    table = runtime().tables.get(name)
    if table is None:
        from_url = (request.view_args or {}).get("name") == name
        methods = _fixed_route_methods(request.path) if from_url else None
        if methods:
            raise MethodNotAllowed(valid_methods=sorted(methods))
        raise ApiError(
            404,
            "unknown_table",
            f"There is no live table {name!r}.",
            {"table": name, "tables": sorted(runtime().tables)},
        )
    return table


@bp.get("/tables")
def tables():
    """Describe every live table."""
    return json_response({"tables": [t.describe() for t in runtime().tables.values()]})


def _order(table: LiveTable, text: str | None) -> list[sa.ColumnElement]:
    """Parse `order=col.asc,col2.desc`; id breaks ties so limit/offset pages are stable."""
    clauses, named = [], set()
    for part in (text or "").split(","):
        if not part.strip():
            continue
        name, _, direction = part.strip().partition(".")
        column = table.column(name)
        if direction not in ("", "asc", "desc"):
            raise ApiError(
                400,
                "invalid_order",
                f"In order=, direction {direction!r} must be asc or desc.",
                {"order": text},
            )
        clauses.append(column.desc() if direction == "desc" else column.asc())
        named.add(name)
    if "id" not in named:
        clauses.append(table.columns["id"].asc())
    return clauses


def _etag(payload: bytes) -> str:
    """Return an opaque (unquoted) entity tag for a response body."""
    return hashlib.blake2b(payload, digest_size=12).hexdigest()


@bp.get("/<name>")
def snapshot(name: str):
    """Return rows and the cursor they are consistent with."""
    rt = runtime()
    table = _table(name)
    conditions = parse_snapshot_filters(request.args, table)
    select = parse_select(table, request.args["select"]) if "select" in request.args else None
    order = _order(table, request.args.get("order"))
    config = rt.config
    limit = int_arg(
        "limit", config["SNAPSHOT_LIMIT_DEFAULT"], low=0, high=config["SNAPSHOT_LIMIT_MAX"]
    )
    offset = int_arg("offset", 0, low=0)
    query = (
        sa.select(table.model.__table__)
        .where(*(c.clause(table.columns[c.column]) for c in conditions))
        .order_by(*order)
        .limit(limit)
        .offset(offset)
    )

    def read(conn) -> tuple[bytes, int, str]:
        cursor = rt.log.head(conn)
        rows = [table.row_from_mapping(row) for row in conn.execute(query).mappings()]
        if select is not None:
            rows = [{k: row[k] for k in select} for row in rows]
        body = orjson.dumps({"rows": rows, "cursor": cursor})
        # Hashed once with the body, not on every cached answer.
        return body, cursor, _etag(body)

    key = (name, tuple(sorted(request.args.items(multi=True))))
    with rt.read() as conn:
        body, cursor, etag = rt.cache.snapshot(conn, key, name, read)
    response = Response(body, mimetype="application/json", headers={"X-Cursor": str(cursor)})
    response.set_etag(etag)
    # GET compares entity tags weakly (RFC 9110 13.1.2): W/"x" matches "x".
    if request.if_none_match.contains_weak(etag):
        response.status_code = 304
        response.set_data(b"")
    return response


@bp.get("/<name>/<int:row_id>")
def read_one(name: str, row_id: int):
    """Return one row."""
    rt = runtime()
    table = _table(name)
    row_id = table.key(row_id)
    with rt.read() as conn:
        found = (
            conn.execute(sa.select(table.model.__table__).where(table.columns["id"] == row_id))
            .mappings()
            .first()
        )
    if found is None:
        raise ApiError(
            404, "not_found", f"{name} has no row {row_id}.", {"table": name, "id": row_id}
        )
    row = table.row_from_mapping(found)
    return json_response({"row": row}, headers={"ETag": f'"{row["version"]}"'})


def _if_match(value: Any) -> int | None:
    """Parse an If-Match version: `"3"`, `W/"3"` or a bare 3; `*` matches any version."""
    if value is None or value == "" or value == "*":
        return None
    # A batch op's if_match may be any JSON: only a number or a string can be a version
    # (and str() of a deeply nested list would recurse past Python's limit).
    text = str(value).strip() if isinstance(value, int | str) else ""
    text = text.removeprefix("W/").strip('"')
    return parse_int(text, "If-Match", low=1)


def apply_write(
    method: str, name: str, row_id: int | None, body: Any, if_match: int | None, key: str | None
) -> tuple[int, dict]:
    """Apply one write in its own transaction; return (status, body) once it is committed."""
    table = _table(name)
    if row_id is not None:
        row_id = table.key(row_id)
    try:
        return _idempotent(
            key,
            f"{method} {name}",
            lambda session: _change(session, table, method, row_id, body, if_match),
        )
    except sa.exc.IntegrityError as exc:
        raise ApiError(
            409,
            "constraint_violation",
            "The change breaks a database constraint.",
            {"table": name, "reason": str(exc.orig)},
        ) from None


def _key_max_age() -> float:
    """Return how long, in seconds, an Idempotency-Key is remembered."""
    return runtime().config["IDEMPOTENCY_HOURS"] * 3600


def _idempotent(
    key: str | None, scope: str, make: Callable[[Any], tuple[int, dict]]
) -> tuple[int, dict]:
    """Run `make(session)` in a write transaction unless this key already has a response;
    remember the response in the same transaction as the write."""
    if key is not None and not 0 < len(key) <= 200:
        raise ApiError(
            400, "invalid_idempotency_key", "Idempotency-Key must be 1 to 200 characters."
        )
    rt = runtime()
    try:
        with rt.write(mutation=key) as session:
            if key is None:
                return make(session)
            conn = session.connection()
            remembered = rt.idempotency.recall(conn, key, scope, _key_max_age())
            if remembered is not None:
                return remembered
            status, result = make(session)
            rt.idempotency.remember(conn, key, scope, status, result, _key_max_age())
            return status, result
    except sa.exc.IntegrityError:
        if key is not None:
            # Another request with the same key won the race: answer as it did.
            with rt.read() as conn:
                remembered = rt.idempotency.recall(conn, key, scope, _key_max_age())
            if remembered is not None:
                return remembered
        raise


def _change(session, table: LiveTable, method: str, row_id, body, if_match) -> tuple[int, dict]:
    """Make the change inside the open transaction and describe the result."""
    rt = runtime()
    if method == "POST":
        obj = table.model(**table.values_from_body(body, partial=False))
        session.add(obj)
        status = 201
    else:
        obj = session.get(table.model, row_id, with_for_update=True)
        if obj is None:
            raise ApiError(
                404,
                "not_found",
                f"{table.name} has no row {row_id}.",
                {"table": table.name, "id": row_id},
            )
        if if_match is not None and obj.version != if_match:
            raise ApiError(
                412,
                "version_conflict",
                f"The row is at version {obj.version}, not {if_match}.",
                {"table": table.name, "id": row_id, "expected": if_match},
                extra={"current": table.row(obj)},
            )
        if method == "PATCH":
            for column, value in table.values_from_body(body, partial=True).items():
                setattr(obj, column, value)
        else:
            session.delete(obj)
        status = 200
    events = rt.appended(session)
    own = [e.id for e in events if e.topic == table.name and e.data["pk"] == obj.id]
    event_id = own[0] if own else None
    if method == "DELETE":
        return status, {"event": event_id}
    return status, {"row": table.row(obj), "event": event_id}


def _write_response(method: str, name: str, row_id: int | None, body: Any = None):
    key = request.headers.get("Idempotency-Key")
    status, result = apply_write(
        method, name, row_id, body, _if_match(request.headers.get("If-Match")), key
    )
    return json_response(result, status)


@bp.post("/<name>")
def create(name: str):
    """Insert a row."""
    _table(name)
    return _write_response("POST", name, None, json_body())


@bp.patch("/<name>/<int:row_id>")
def update(name: str, row_id: int):
    """Change some columns of a row."""
    _table(name)
    return _write_response("PATCH", name, row_id, json_body())


@bp.delete("/<name>/<int:row_id>")
def delete(name: str, row_id: int):
    """Delete a row."""
    _table(name)
    return _write_response("DELETE", name, row_id)


def _batch_op(op: Any) -> tuple[int, dict]:
    """Validate and apply one batch operation, turning its error into a result."""
    try:
        if not isinstance(op, dict):
            raise ApiError(400, "invalid_op", "Each op must be a JSON object.")
        method = op.get("method")
        if method not in WRITE_METHODS:
            raise ApiError(
                400,
                "invalid_method",
                "method must be POST, PATCH or DELETE.",
                # Any JSON may come here; orjson cannot encode it past 254 levels deep.
                {"method": method if isinstance(method, str) else None},
            )
        name = op.get("table")
        if not isinstance(name, str):
            raise ApiError(400, "invalid_op", "table must be a table name.")
        # A POST names no row: whatever its op says under "id" is not one.
        row_id = op.get("id") if method != "POST" else None
        if method != "POST" and (not isinstance(row_id, int) or isinstance(row_id, bool)):
            raise ApiError(400, "invalid_op", f"{method} needs the row's integer id.")
        key = op.get("key")
        if key is not None and not isinstance(key, str):
            raise ApiError(400, "invalid_idempotency_key", "key must be a string.")
        body = op.get("row") if method != "DELETE" else None
        return apply_write(method, name, row_id, body, _if_match(op.get("if_match")), key)
    except ApiError as error:
        return error.status, error.body()


@bp.post("/batch")
def batch():
    """Apply several writes in order, each in its own transaction."""
    body = json_body()
    ops = body.get("ops") if isinstance(body, dict) else None
    if not isinstance(ops, list):
        raise ApiError(400, "invalid_body", 'The body must be {"ops": [...]}.')
    if len(ops) > 1000:
        raise ApiError(400, "batch_too_large", "A batch holds at most 1000 ops.", {"ops": len(ops)})
    results = [dict(zip(("status", "body"), _batch_op(op), strict=True)) for op in ops]
    return json_response({"results": results})


@bp.post("/publish")
def publish():
    """Append an event to a custom topic."""
    rt = runtime()
    token = rt.config["PUBLISH_TOKEN"]
    given = request.headers.get("Authorization", "").encode()
    if token and not hmac.compare_digest(given, f"Bearer {token}".encode()):
        raise ApiError(
            401,
            "unauthorized",
            "Publishing needs the publisher token as a Bearer credential.",
            headers={"WWW-Authenticate": "Bearer"},
        )
    body = json_body()
    if not isinstance(body, dict) or not isinstance(body.get("topic"), str) or "data" not in body:
        raise ApiError(400, "invalid_body", 'The body must be {"topic": "...", "data": ...}.')
    topic = body["topic"]
    # Table names never equal custom topics (checked at startup), so tables are refused here.
    if topic not in rt.custom_topics:
        raise ApiError(
            400,
            "unknown_topic",
            f"{topic!r} is not a declared custom topic (tables change through their own API).",
            {"topic": topic, "topics": list(rt.custom_topics)},
        )
    key = request.headers.get("Idempotency-Key")

    def append(session) -> tuple[int, dict]:
        return 201, {"event": rt.append_to_topic(session, topic, body["data"], mutation=key).id}

    status, result = _idempotent(key, f"POST publish:{topic}", append)
    return json_response(result, status)
