"""Small HTTP helpers shared by the blueprints: JSON in, JSON out, typed query values."""

import re
from typing import Any

import orjson
from flask import Response, request

from feed import ApiError
from feed.values import INT64_MAX

_INTEGER = re.compile(r"-?[0-9]+")


def json_response(body: Any, status: int = 200, headers: dict | None = None) -> Response:
    """Return a JSON response encoded with orjson."""
    return Response(orjson.dumps(body), status=status, headers=headers, mimetype="application/json")


def json_body() -> Any:
    """Return the parsed JSON request body, or raise the protocol's 413/415/400."""
    if request.mimetype != "application/json":
        raise ApiError(
            415,
            "unsupported_media_type",
            "Send the body as JSON with Content-Type: application/json.",
            {"content_type": request.content_type},
        )
    raw = request.get_data(cache=True)
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ApiError(
            400, "invalid_json", "The request body is not valid JSON.", {"reason": str(exc)}
        ) from None


def int_arg(name: str, default: int | None, *, low: int, high: int = INT64_MAX) -> int | None:
    """Read an integer query parameter within bounds, or raise a 400 naming it."""
    text = request.args.get(name)
    if text is None or text == "":
        return default
    return parse_int(text, name, low=low, high=high)


def parse_int(text: str, name: str, *, low: int, high: int = INT64_MAX) -> int:
    """Parse an integer value within bounds (at most what the database holds), or raise a
    400 naming it."""
    # int() would also take "1_000", " 7" and non-ASCII digits; the protocol means plain ones.
    value = int(text) if _INTEGER.fullmatch(text) and len(text) <= 40 else None
    if value is None or not low <= value <= high:
        bound = f" between {low} and {high}"
        raise ApiError(
            400,
            f"invalid_{name.replace('-', '_').lower()}",
            f"{name} must be an integer{bound}.",
            {name: text},
        )
    return value
