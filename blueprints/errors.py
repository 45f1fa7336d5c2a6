"""Every error, from anywhere, leaves as the protocol's JSON error."""

import logging
import re

import sqlalchemy as sa
from flask import Flask
from werkzeug.exceptions import HTTPException

from feed import ApiError

from .http import json_response

logger = logging.getLogger("tidings.errors")


def _code(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def _body(code: str, message: str) -> dict:
    """Return an error body with no details."""
    return {"error": code, "message": message, "details": {}}


def init_app(app: Flask) -> None:
    """Register JSON handlers for API errors, HTTP errors and crashes."""

    @app.errorhandler(ApiError)
    def _api_error(error: ApiError):
        return json_response(error.body(), error.status, error.headers)

    @app.errorhandler(HTTPException)
    def _http_error(error: HTTPException):
        body = _body(_code(error.name), error.description or error.name)
        headers = {k: v for k, v in error.get_headers() if k.lower() != "content-type"}
        return json_response(body, error.code or 500, headers)

    # Unreachable, locked or exhausted database: the client may retry, so not a 500.
    @app.errorhandler(sa.exc.OperationalError)
    @app.errorhandler(sa.exc.TimeoutError)
    def _database_down(error: Exception):
        logger.exception("database unavailable")
        body = _body("database_unavailable", "The database cannot be reached; try again soon.")
        return json_response(body, 503, {"Retry-After": "1"})

    # A value the parsers let through but the database cannot hold (NUL in PostgreSQL text):
    # the request's fault, and its transaction was rolled back.
    @app.errorhandler(sa.exc.DataError)
    def _value_refused(error: sa.exc.DataError):
        logger.warning("the database refused a value: %s", error.orig)
        body = _body("invalid_value", "A value in the request cannot be stored by the database.")
        return json_response(body, 400)

    @app.errorhandler(Exception)
    def _crash(error: Exception):
        logger.exception("unhandled error")
        body = _body("internal_error", "The server failed to handle this request.")
        return json_response(body, 500)
