"""Cross-origin requests from the origins in CORS_ORIGINS; none when it is empty.

Cross-origin callers authenticate with a bearer token (or `access_token=`), never with the
session cookie: no Access-Control-Allow-Credentials is sent.
"""

from flask import Flask, Response, current_app, request

from feed import ApiError

ALLOW_METHODS = "GET, POST, PATCH, DELETE"
ALLOW_HEADERS = ", ".join(
    (
        "Content-Type",
        "Authorization",
        "If-Match",
        "If-None-Match",
        "Idempotency-Key",
        "X-CSRF-Token",
        "Last-Event-ID",
        "X-Request-ID",
    )
)
EXPOSE_HEADERS = "X-Cursor, ETag, Retry-After, X-Request-ID, Server-Timing"
# Seconds a browser may reuse a preflight's answer.
MAX_AGE = "600"


def init_app(app: Flask) -> None:
    """Answer preflights and mark responses for allowed origins.

    Register before the access gate: a preflight carries no credentials.
    """
    app.config["CORS_ORIGINS"] = [origin.rstrip("/") for origin in app.config["CORS_ORIGINS"]]
    app.before_request(preflight)
    app.after_request(mark)


def _allowed(origin: str | None) -> bool:
    return origin is not None and origin in current_app.config["CORS_ORIGINS"]


def preflight() -> Response | None:
    """Answer a preflight from an allowed origin; refuse one from any other."""
    if request.method != "OPTIONS" or "Access-Control-Request-Method" not in request.headers:
        return None
    origin = request.headers.get("Origin")
    if origin is None:
        return None
    if not _allowed(origin):
        raise ApiError(
            403,
            "origin_not_allowed",
            "This origin may not call the API from a browser; see CORS_ORIGINS.",
            {"origin": origin},
        )
    return Response(
        status=204,
        headers={
            "Access-Control-Allow-Methods": ALLOW_METHODS,
            "Access-Control-Allow-Headers": ALLOW_HEADERS,
            "Access-Control-Max-Age": MAX_AGE,
        },
    )


def mark(response: Response) -> Response:
    """Let an allowed origin read the response and the headers clients use."""
    if not current_app.config["CORS_ORIGINS"]:
        return response
    # With a list, the answer depends on Origin: caches must keep one per origin.
    response.vary.add("Origin")
    origin = request.headers.get("Origin")
    if _allowed(origin):
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Expose-Headers"] = EXPOSE_HEADERS
    return response
