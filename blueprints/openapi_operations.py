"""What each route takes and answers, for /openapi.json: one builder per endpoint.

A builder gets the live table of the path (None for a fixed route) and the document's
context, and returns the operation's parameters, request body and responses.
"""

from collections.abc import Callable
from dataclasses import dataclass

from feed.live import LiveTable

from .openapi_schemas import CURSOR, STRING, column_schema, nullable, ref


@dataclass(frozen=True)
class Context:
    """What the document is generated from: the live tables, custom topics and settings."""

    tables: dict[str, LiveTable]
    topics: tuple[str, ...]
    config: dict


# Who may call: a bearer token, or the session cookie (with its CSRF token on writes);
# streams and polls also take a stream token in the query.
READ = [{"bearer": []}, {"session": []}]
WRITE = [{"bearer": []}, {"session": [], "csrf": []}]
SUBSCRIBE = [*READ, {"access_token": []}]
OPEN: list = []

ERRORS = {
    400: "Bad input: a parameter, header or body value the route cannot take.",
    401: "No valid credential (`unauthenticated`), or a wrong sign-in (`invalid_credentials`).",
    403: "The principal may not do this (`forbidden`), or a cookie write lacks X-CSRF-Token.",
    404: "No such table, or no row the principal may read.",
    405: "The method is not allowed on this path.",
    409: "The write conflicts with a constraint (a unique value, a missing referenced row).",
    410: "The cursor is older than the log's tail: reload from `reset.snapshot`.",
    412: "If-Match names another version than the row's (`current` holds the row).",
    413: "The body is over the size limit (1 MiB by default).",
    415: "The body is not sent as application/json.",
    429: "Over a rate limit: retry after Retry-After seconds.",
    503: "A dependency (database, Redis) is down: retry soon.",
}
AT_CAPACITY = (
    "A dependency is down, this worker is draining, or it holds WORKER_CONNECTIONS streams: "
    "retry after Retry-After."
)
# Every signed-in route may meet these.
SIGNED_IN = (401, 403, 429, 503)
BODY = (400, 413, 415)


def param(name: str, where: str, schema: dict, description: str, required: bool = False) -> dict:
    """Describe one parameter."""
    return {
        "name": name,
        "in": where,
        "schema": schema,
        "description": description,
        "required": required or where == "path",
    }


def json_content(schema: dict) -> dict:
    """Return a JSON media type of a schema."""
    return {"application/json": {"schema": schema}}


def body(schema: dict) -> dict:
    """Return a required JSON request body."""
    return {"required": True, "content": json_content(schema)}


def ok(schema: dict, description: str = "Done.", headers: dict | None = None) -> dict:
    """Return a JSON success response."""
    answer = {"description": description, "content": json_content(schema)}
    if headers:
        answer["headers"] = headers
    return answer


def responses(success: dict, *errors: int) -> dict:
    """Return success responses (status → response) and the protocol's errors by reference."""
    found = {str(status): answer for status, answer in success.items()}
    for status in sorted(set(errors)):
        found[str(status)] = {"$ref": f"#/components/responses/{status}"}
    return found


def operation(security: list, answers: dict, *, parameters=(), request=None) -> dict:
    """Assemble an operation."""
    found = {"security": security, "parameters": list(parameters), "responses": answers}
    if request is not None:
        found["requestBody"] = request
    return found


FILTER = {
    "type": "string",
    "pattern": r"^((eq|neq|lt|lte|gt|gte)\..*|in\.\(.*\)|is\.(null|true|false))$",
}
PRIORITY = {"type": "string", "enum": ["high", "normal", "low"]}
LIMIT_HEADER = {"schema": {"type": "string", "pattern": "^[0-9]+$"}, "description": "Seconds."}


def _id(table: LiveTable, name: str) -> dict:
    """Describe a row id in the path, bounded as the table's id column."""
    schema = {**column_schema(table.columns["id"]), "minimum": 0}
    return param(name, "path", schema, "The row's id.")


def _filters(table: LiveTable, prefix: str = "") -> list[dict]:
    """Describe a row filter on every column of a table."""
    return [
        param(
            f"{prefix}{name}",
            "query",
            FILTER,
            f"Keep rows whose {name} passes the test, PostgREST style (eq.5, in.(1,2), is.null).",
        )
        for name in table.columns
    ]


def _subscription(ctx: Context) -> list[dict]:
    """Describe topics=, every topic's filters, select= and priority=, and the cursor."""
    found = [
        param(
            "topics",
            "query",
            {"type": "string", "pattern": r"^[a-z0-9_]+(,[a-z0-9_]+)*$"},
            f"Comma-separated topics: {', '.join([*ctx.tables, *ctx.topics])}.",
            required=True,
        ),
        param("cursor", "query", CURSOR, "Send only events after this id."),
        param("access_token", "query", STRING, "A stream token from /api/auth/stream-token."),
    ]
    for topic in [*ctx.tables, *ctx.topics]:
        table = ctx.tables.get(topic)
        if table is not None:
            found += _filters(table, f"{topic}.")
            found.append(param(f"{topic}.select", "query", STRING, "Columns to send."))
        found.append(param(f"{topic}.priority", "query", PRIORITY, "What to keep when behind."))
    return found


def stream(table: LiveTable | None, ctx: Context) -> dict:
    """GET /stream."""
    events = {
        "description": "Server-Sent Events: `retry:`, a replay, `ready`, then live `change` "
        "events, heartbeats, `reset` and `auth-expired`.",
        "content": {"text/event-stream": {"schema": STRING}},
    }
    header = param("Last-Event-ID", "header", STRING, "Resume after this id; wins over cursor=.")
    return operation(
        SUBSCRIBE,
        responses({200: events, 503: ok(ref("Error"), AT_CAPACITY)}, 400, *SIGNED_IN[:-1]),
        parameters=[*_subscription(ctx), header],
    )


def changes(table: LiveTable | None, ctx: Context) -> dict:
    """GET /api/changes."""
    config = ctx.config
    limits = [
        param(
            "limit",
            "query",
            {"type": "integer", "minimum": 1, "maximum": config["POLL_LIMIT_MAX"]},
            "Most events to return (500 by default).",
        ),
        param(
            "wait",
            "query",
            {"type": "number", "minimum": 0, "maximum": config["POLL_WAIT_MAX"]},
            "Seconds to hold the poll open until an event matches.",
        ),
    ]
    return operation(
        SUBSCRIBE,
        responses({200: ok(ref("Poll"))}, 400, 410, *SIGNED_IN),
        parameters=[*_subscription(ctx), *limits],
    )


def snapshot(table: LiveTable, ctx: Context) -> dict:
    """GET /api/<table>."""
    config = ctx.config
    shape = [
        param("select", "query", STRING, "Comma-separated columns to return."),
        param("order", "query", STRING, "col.asc or col.desc."),
        param(
            "limit",
            "query",
            {"type": "integer", "minimum": 0, "maximum": config["SNAPSHOT_LIMIT_MAX"]},
            f"Most rows to return ({config['SNAPSHOT_LIMIT_DEFAULT']} by default).",
        ),
        param("offset", "query", CURSOR, "Rows to skip."),
        param("If-None-Match", "header", STRING, "An ETag: 304 while the rows are unchanged."),
    ]
    rows = {
        "type": "object",
        "properties": {"rows": {"type": "array", "items": ref(table.name)}, "cursor": CURSOR},
        "required": ["rows", "cursor"],
    }
    headers = {
        "X-Cursor": {"schema": STRING, "required": True, "description": "The cursor."},
        "ETag": {"schema": STRING, "required": True},
    }
    answers = {
        200: ok(rows, "The rows, consistent with the log up to the cursor.", headers),
        304: {"description": "Not modified since the ETag in If-None-Match."},
    }
    return operation(
        READ, responses(answers, 400, *SIGNED_IN), parameters=[*_filters(table), *shape]
    )


def _row(table: LiveTable) -> dict:
    return {"type": "object", "properties": {"row": ref(table.name)}, "required": ["row"]}


def _written(table: LiveTable, event: dict = CURSOR) -> dict:
    return {
        "type": "object",
        "properties": {"row": ref(table.name), "event": event},
        "required": ["row", "event"],
    }


# A PATCH that changes no value appends no event.
NO_EVENT_IF_UNCHANGED = {**nullable(CURSOR), "description": "null when no value changed."}


def read_one(table: LiveTable, ctx: Context) -> dict:
    """GET /api/<table>/<id>."""
    headers = {"ETag": {"schema": STRING, "required": True, "description": "The row's version."}}
    return operation(
        READ,
        # 400: an id wider than the id column (`invalid_id`).
        responses({200: ok(_row(table), "The row.", headers)}, 400, 404, *SIGNED_IN),
        parameters=[_id(table, "row_id")],
    )


WRITE_HEADERS = (
    param(
        "Idempotency-Key",
        "header",
        {"type": "string", "minLength": 1},
        "A repeat of the key within 24 h returns the first answer and writes nothing.",
    ),
)
IF_MATCH = param("If-Match", "header", STRING, 'The version the change expects, as "3".')


def create(table: LiveTable, ctx: Context) -> dict:
    """POST /api/<table>."""
    return operation(
        WRITE,
        responses({201: ok(_written(table), "Inserted.")}, 409, *BODY, *SIGNED_IN),
        parameters=WRITE_HEADERS,
        request=body(ref(f"{table.name}_insert")),
    )


def update(table: LiveTable, ctx: Context) -> dict:
    """PATCH /api/<table>/<id>."""
    return operation(
        WRITE,
        responses(
            {200: ok(_written(table, NO_EVENT_IF_UNCHANGED), "Changed.")},
            404,
            409,
            412,
            *BODY,
            *SIGNED_IN,
        ),
        parameters=[_id(table, "row_id"), IF_MATCH, *WRITE_HEADERS],
        request=body(ref(f"{table.name}_update")),
    )


def delete(table: LiveTable, ctx: Context) -> dict:
    """DELETE /api/<table>/<id>."""
    return operation(
        WRITE,
        responses({200: ok(ref("Appended"), "Deleted.")}, 400, 404, 409, 412, *SIGNED_IN),
        parameters=[_id(table, "row_id"), IF_MATCH, *WRITE_HEADERS],
    )


def _fixed(
    security: list, answer: dict, *errors: int, request: dict | None = None, parameters=()
) -> Callable[[LiveTable | None, Context], dict]:
    """Return the builder of a fixed route's operation."""

    def build(table: LiveTable | None, ctx: Context) -> dict:
        return operation(
            security, responses(answer, *errors), parameters=parameters, request=request
        )

    return build


HTML = {200: {"description": "The page.", "content": {"text/html": {"schema": STRING}}}}
SIGN_IN_PAGE = {
    200: {
        "description": "The page, or the sign-in form for nobody.",
        "content": {"text/html": {"schema": STRING}},
    }
}
TEXT_EVENTS = {
    200: {"description": "Timed SSE blocks.", "content": {"text/event-stream": {"schema": STRING}}}
}
ANY_OBJECT = {"type": "object"}
TOKEN_ID = {"type": "integer", "minimum": 0, "maximum": 2**31 - 1}

OPERATIONS: dict[str, Callable[[LiveTable | None, Context], dict]] = {
    "static": _fixed(
        OPEN,
        {200: {"description": "A static file.", "content": {"*/*": {"schema": STRING}}}},
        404,
        parameters=[param("filename", "path", STRING, "The file's path under /static.")],
    ),
    "openapi.document_json": _fixed(OPEN, {200: ok(ANY_OBJECT, "This document (OpenAPI 3.1).")}),
    "stream.stream": stream,
    "stream.changes": changes,
    "stream.presence": _fixed(
        READ,
        {200: ok(ref("Roster"), "Who is connected now, and the cursor to follow from.")},
        400,
        *SIGNED_IN,
        parameters=[
            param("topics", "query", STRING, "Comma-separated topics: only users on them.")
        ],
    ),
    "auth.login": _fixed(
        OPEN,
        {200: ok(ref("SignedIn"), "Signed in.")},
        401,
        429,
        503,
        *BODY,
        request=body(ref("Login")),
    ),
    "auth.logout": _fixed(WRITE, {200: ok(ref("SignedOut"), "Signed out.")}, *SIGNED_IN),
    "auth.me": _fixed(READ, {200: ok(ref("SignedIn"), "Who is signed in.")}, *SIGNED_IN),
    "auth.create_token": _fixed(
        WRITE,
        {201: ok(ref("IssuedToken"), "Issued; shown this once.")},
        *BODY,
        *SIGNED_IN,
        request=body(ref("NewToken")),
    ),
    "auth.list_tokens": _fixed(READ, {200: ok(ref("Tokens"), "The caller's tokens.")}, *SIGNED_IN),
    "auth.revoke_token": _fixed(
        WRITE,
        {200: ok(ref("Token"), "Revoked.")},
        404,
        *SIGNED_IN,
        parameters=[param("token_id", "path", TOKEN_ID, "The token.")],
    ),
    "auth.stream_token": _fixed(
        WRITE, {200: ok(ref("StreamToken"), "A short-lived stream token.")}, *SIGNED_IN
    ),
    "api.tables": _fixed(READ, {200: ok(ref("Tables"), "Every live table.")}, *SIGNED_IN),
    "api.snapshot": snapshot,
    "api.read_one": read_one,
    "api.create": create,
    "api.update": update,
    "api.delete": delete,
    "api.batch": _fixed(
        WRITE,
        {200: ok(ref("BatchResults"), "Each op's status and body.")},
        *BODY,
        *SIGNED_IN,
        request=body(ref("Batch")),
    ),
    "api.publish": _fixed(
        WRITE,
        {201: ok(ref("Appended"), "Published.")},
        *BODY,
        *SIGNED_IN,
        request=body(ref("Publish")),
    ),
    "ops.healthz": _fixed(OPEN, {200: ok(ref("Status"), "Alive.")}),
    "ops.readyz": _fixed(
        OPEN,
        {
            200: ok(ref("Status"), "Database and Redis answer."),
            503: ok(ref("Error"), "A dependency is down, or this worker is draining."),
        },
    ),
    "monitor.page": _fixed(READ, SIGN_IN_PAGE, *SIGNED_IN),
    "monitor.figures_json": _fixed(READ, {200: ok(ANY_OBJECT, "The figures.")}, *SIGNED_IN),
    "monitor.metrics": _fixed(
        # Open unless METRICS_TOKEN is set.
        [{"bearer": []}, {}],
        {200: {"description": "Prometheus text.", "content": {"text/plain": {"schema": STRING}}}},
        401,
    ),
    "monitor.self_test": _fixed(READ, TEXT_EVENTS, *SIGNED_IN),
    "dashboard.index": _fixed(READ, SIGN_IN_PAGE, *SIGNED_IN),
    "dashboard.presence": _fixed(
        WRITE,
        {201: ok(ref("Appended"), "Announced.")},
        *BODY,
        *SIGNED_IN,
        request=body(ref("Presence")),
    ),
}
