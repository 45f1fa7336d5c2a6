"""Operations endpoints: liveness and readiness."""

from flask import Blueprint

from feed import runtime

from .http import json_response

bp = Blueprint("ops", __name__)


@bp.get("/healthz")
def healthz():
    """Answer while the process is alive."""
    return json_response({"status": "ok"})


def database_ok() -> bool:
    """Tell whether the database answers."""
    return runtime().transactions.answers()


@bp.get("/readyz")
def readyz():
    """Answer 200 when the database and Redis are reachable, 503 otherwise or while this
    worker drains."""
    if runtime().drain.draining:
        return json_response(
            {
                "status": "draining",
                "error": "draining",
                "message": "This server is shutting down; send requests to another.",
                "details": {},
            },
            503,
        )
    checks = {"database": database_ok(), "redis": runtime().bus.ping()}
    ready = all(checks.values())
    body = {"status": "ready" if ready else "unavailable", "checks": checks}
    if not ready:
        body.update(error="dependency_down", message="A dependency is unreachable.", details=checks)
    return json_response(body, 200 if ready else 503)
