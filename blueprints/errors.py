"""Every error, from anywhere, leaves as the protocol's JSON error."""

import logging
import re

from flask import Flask
from werkzeug.exceptions import HTTPException

from feed import ApiError

from .http import json_response

logger = logging.getLogger("tidings.errors")


def _code(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def init_app(app: Flask) -> None:
    """Register JSON handlers for API errors, HTTP errors and crashes."""

    @app.errorhandler(ApiError)
    def _api_error(error: ApiError):
        return json_response(error.body(), error.status, error.headers)

    @app.errorhandler(HTTPException)
    def _http_error(error: HTTPException):
        body = {"error": _code(error.name), "message": error.description, "details": {}}
        headers = {k: v for k, v in error.get_headers() if k.lower() != "content-type"}
        return json_response(body, error.code or 500, headers)

    @app.errorhandler(Exception)
    def _crash(error: Exception):
        logger.exception("unhandled error")
        body = {
            "error": "internal_error",
            "message": "The server failed to handle this request.",
            "details": {},
        }
        return json_response(body, 500)
