"""JSON Schemas for /openapi.json: live tables' rows from their columns, and the protocol's
fixed bodies (error, event, subscription answers, identity)."""

import sqlalchemy as sa

from feed.live import MANAGED_COLUMNS, LiveTable
from feed.policy import Policy
from feed.values import integer_bits, type_name

_JSON_TYPES = {
    "integer": {"type": "integer"},
    "number": {"type": "number"},
    "string": {"type": "string"},
    "boolean": {"type": "boolean"},
    "datetime": {"type": "string", "format": "date-time"},
    "date": {"type": "string", "format": "date"},
    "json": {},
}


def ref(name: str) -> dict:
    """Point at a schema of the document's components."""
    return {"$ref": f"#/components/schemas/{name}"}


def nullable(schema: dict) -> dict:
    """Let a schema also take null."""
    return {"anyOf": [schema, {"type": "null"}]}


def _constraints(column: sa.Column, kind: str) -> dict:
    """Return the bounds a value must keep to fit the column."""
    found = {}
    if kind == "integer":
        bits = integer_bits(column.type)
        found.update(minimum=-(2 ** (bits - 1)), maximum=2 ** (bits - 1) - 1)
    precision, scale = getattr(column.type, "precision", None), getattr(column.type, "scale", None)
    if kind == "number" and precision is not None and scale is not None:
        size = 10 ** (precision - scale)
        found.update(exclusiveMinimum=-size, exclusiveMaximum=size)
        # Not multipleOf: the server rounds a written value to the scale, it does not refuse it.
        found["description"] = f"NUMERIC({precision},{scale}): rounded to {scale} decimal places."
    length = getattr(column.type, "length", None)
    if kind == "string" and length:
        found["maxLength"] = length
    return found


def column_schema(column: sa.Column, *, read_only: bool = False) -> dict:
    """Return the JSON Schema of one column's values."""
    kind = type_name(column)
    schema = {**_JSON_TYPES[kind], **_constraints(column, kind)}
    if column.nullable and kind != "json":
        schema = nullable(schema)
    if read_only:
        schema["readOnly"] = True
    return schema


def _server_set(policy: Policy) -> set[str]:
    """Return the columns the server fills: its bookkeeping and who acted."""
    return set(MANAGED_COLUMNS) | set(policy.actor_columns)


def _required(column: sa.Column) -> bool:
    has_default = column.default is not None or column.server_default is not None
    return not column.nullable and not has_default


def row_schemas(table: LiveTable, policy: Policy) -> dict[str, dict]:
    """Return a table's row (as read, any columns when projected), insert and update bodies."""
    server_set = _server_set(policy)
    row = {
        name: column_schema(column, read_only=name in server_set)
        for name, column in table.columns.items()
    }
    writable = {
        name: column_schema(c) for name, c in table.columns.items() if name not in server_set
    }
    required = [n for n, c in table.columns.items() if n not in server_set and _required(c)]
    return {
        table.name: {"type": "object", "properties": row, "additionalProperties": False},
        f"{table.name}_insert": {
            "type": "object",
            "properties": writable,
            "required": required,
            "additionalProperties": False,
        },
        f"{table.name}_update": {
            "type": "object",
            "properties": writable,
            "additionalProperties": False,
        },
    }


def _object(properties: dict, *, required: tuple[str, ...] | None = None, **more) -> dict:
    """Return an object schema; every property is required unless said otherwise."""
    names = list(properties) if required is None else list(required)
    return {"type": "object", "properties": properties, "required": names, **more}


INTEGER = {"type": "integer"}
STRING = {"type": "string"}
# Ids, cursors and offsets: no database column holds a wider integer.
CURSOR = {"type": "integer", "minimum": 0, "maximum": 2**63 - 1}
TIMESTAMP = {"type": "string", "format": "date-time"}
ROLE = {"type": "string", "enum": ["admin", "manager", "staff", "viewer"]}
USER = _object({"id": INTEGER, "username": STRING, "role": ROLE, "store_id": nullable(INTEGER)})
RESET = _object(
    {
        "reason": {"type": "string", "enum": ["expired", "epoch", "lagging"]},
        "cursor": CURSOR,
        "snapshot": STRING,
    },
    required=("reason", "cursor"),
)

FIXED = {
    "Error": _object(
        {
            "error": {"type": "string", "pattern": "^[a-z0-9_]+$"},
            "message": STRING,
            "details": {"type": "object"},
            "current": {"type": "object", "description": "412: the row as it is now."},
            "reset": ref("Reset"),
        },
        required=("error", "message", "details"),
    ),
    "Reset": RESET,
    "Event": _object(
        {
            "id": CURSOR,
            "topic": STRING,
            "op": {"type": "string", "enum": ["INSERT", "UPDATE", "DELETE", "PUBLISH"]},
            "pk": nullable(INTEGER),
            "version": nullable(INTEGER),
            "row": {},
            "old": nullable({"type": "object"}),
            "at": TIMESTAMP,
            "mutation": nullable(STRING),
        }
    ),
    "Poll": _object(
        {
            "events": {"type": "array", "items": ref("Event")},
            "cursor": CURSOR,
            "more": {"type": "boolean"},
        }
    ),
    "Tables": _object(
        {
            "tables": {
                "type": "array",
                "items": _object(
                    {
                        "name": STRING,
                        "columns": {
                            "type": "array",
                            "items": _object(
                                {
                                    "name": STRING,
                                    "type": {"enum": sorted({*_JSON_TYPES})},
                                    "nullable": {"type": "boolean"},
                                    "primary_key": {"type": "boolean"},
                                }
                            ),
                        },
                    }
                ),
            }
        }
    ),
    "Written": _object({"row": {"type": "object"}, "event": CURSOR}),
    "Appended": _object({"event": CURSOR}),
    "Batch": _object(
        {
            "ops": {
                "type": "array",
                "items": _object(
                    {
                        "method": {"enum": ["POST", "PATCH", "DELETE"]},
                        "table": STRING,
                        "id": INTEGER,
                        "row": {"type": "object"},
                        "if_match": INTEGER,
                        "key": STRING,
                    },
                    required=("method", "table"),
                ),
            }
        }
    ),
    "BatchResults": _object(
        {
            "results": {
                "type": "array",
                "items": _object({"status": INTEGER, "body": {"type": "object"}}),
            }
        }
    ),
    "Publish": _object({"topic": STRING, "data": {}}),
    "Login": _object({"username": STRING, "password": STRING}),
    "SignedIn": _object({"user": USER, "csrf_token": nullable(STRING)}),
    "SignedOut": _object({"signed_out": {"type": "boolean"}}),
    "NewToken": _object(
        {"name": STRING, "expires_in": {"type": "integer", "minimum": 1}}, required=("name",)
    ),
    "IssuedToken": _object(
        {"id": INTEGER, "name": STRING, "token": STRING, "expires_at": TIMESTAMP}
    ),
    "Token": _object(
        {
            "id": INTEGER,
            "name": STRING,
            "created_at": TIMESTAMP,
            "expires_at": TIMESTAMP,
            "revoked_at": nullable(TIMESTAMP),
        }
    ),
    "Tokens": _object({"tokens": {"type": "array", "items": ref("Token")}}),
    "StreamToken": _object({"token": STRING, "expires_at": TIMESTAMP}),
    "Presence": _object(
        {
            "client": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"},
            "state": {"enum": ["here", "away", "gone"]},
            "hello": {"type": "boolean"},
        },
        required=("client", "state"),
    ),
    "Roster": _object(
        {
            "users": {
                "type": "array",
                "items": _object(
                    {
                        "username": STRING,
                        "role": STRING,
                        "since": TIMESTAMP,
                        "topics": {"type": "array", "items": STRING},
                    }
                ),
            },
            "cursor": CURSOR,
        }
    ),
    "Status": _object({"status": STRING}, additionalProperties=True),
}
