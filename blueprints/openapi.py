"""GET /openapi.json: the API described as OpenAPI 3.1, from the app's routes and live tables.

Open to anyone, like the protocol it describes: it holds the contract, never data.
"""

import re

from flask import Blueprint, Flask, current_app
from werkzeug.routing import Rule

from feed import runtime
from feed.live import LiveTable
from identity.sessions import COOKIE

from .http import json_response
from .openapi_operations import ERRORS, LIMIT_HEADER, OPERATIONS, Context, json_content
from .openapi_schemas import FIXED, ref, row_schemas

bp = Blueprint("openapi", __name__)

# Methods every route has, which the document leaves implied.
IMPLIED = frozenset({"HEAD", "OPTIONS"})
_ARGUMENT = re.compile(r"<(?:[a-z]+(?:\([^)]*\))?:)?([a-z_]+)>")


def documented_methods(rule: Rule) -> list[str]:
    """Return the methods of a rule that the document describes."""
    return sorted(set(rule.methods or ()) - IMPLIED)


def _paths(rule: Rule, ctx: Context) -> list[tuple[str, LiveTable | None]]:
    """Return the OpenAPI paths of a rule, with their live table: one per table for <name>."""
    template = _ARGUMENT.sub(r"{\1}", rule.rule)
    if "name" not in rule.arguments:
        return [(template, None)]
    return [(template.replace("{name}", name), table) for name, table in ctx.tables.items()]


def _operation_id(endpoint: str, table: LiveTable | None) -> str:
    suffix = f"_{table.name}" if table is not None else ""
    return endpoint.replace(".", "_") + suffix


def paths(app: Flask, ctx: Context) -> dict:
    """Describe every route of the app; a route with no builder is a LookupError."""
    found: dict[str, dict] = {}
    for rule in app.url_map.iter_rules():
        build = OPERATIONS.get(rule.endpoint)
        if build is None:
            raise LookupError(f"{rule.endpoint} ({rule.rule}) is not described for /openapi.json")
        view = app.view_functions[rule.endpoint]
        summary = (view.__doc__ or rule.endpoint).strip().splitlines()[0]
        for path, table in _paths(rule, ctx):
            for method in documented_methods(rule):
                described = build(table, ctx)
                described.update(summary=summary, operationId=_operation_id(rule.endpoint, table))
                found.setdefault(path, {})[method.lower()] = described
    return found


def _error_responses() -> dict:
    """Return the protocol's error responses, each with the error schema."""
    found = {}
    for status, description in ERRORS.items():
        answer = {"description": description, "content": json_content(ref("Error"))}
        if status in (429, 503):
            # Always on a 429; on a 503 when a retry soon may succeed.
            answer["headers"] = {"Retry-After": {**LIMIT_HEADER, "required": status == 429}}
        found[str(status)] = answer
    return found


SECURITY_SCHEMES = {
    "bearer": {"type": "http", "scheme": "bearer", "description": "An API token."},
    "session": {"type": "apiKey", "in": "cookie", "name": COOKIE},
    "csrf": {
        "type": "apiKey",
        "in": "header",
        "name": "X-CSRF-Token",
        "description": "The session's csrf_token, on every cookie-authenticated write.",
    },
    "access_token": {
        "type": "apiKey",
        "in": "query",
        "name": "access_token",
        "description": "A stream token, on /stream and /api/changes only.",
    },
}


def document(app: Flask) -> dict:
    """Return the OpenAPI 3.1 document of the app."""
    rt = runtime()
    ctx = Context(rt.tables, rt.custom_topics, rt.config)
    schemas = dict(FIXED)
    for name, table in ctx.tables.items():
        schemas.update(row_schemas(table, rt.registry.policy(name)))
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Tidings",
            "version": "1",
            "description": "A real-time change feed: snapshots, writes, SSE streams and polls "
            "over live tables. Every error is JSON: {error, message, details}.",
        },
        "paths": paths(app, ctx),
        "components": {
            "schemas": schemas,
            "responses": _error_responses(),
            "securitySchemes": SECURITY_SCHEMES,
        },
    }


@bp.get("/openapi.json")
def document_json():
    """Describe the API as OpenAPI 3.1."""
    # Routes and tables are fixed once the app runs: describe them once per process.
    described = current_app.extensions.get("openapi")
    if described is None:
        described = current_app.extensions["openapi"] = document(current_app)
    return json_response(described)
