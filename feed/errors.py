"""The one error type the API raises, rendered as the protocol's JSON error."""


class ApiError(Exception):
    """A client-facing error with an HTTP status and a snake_case code."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: dict | None = None,
        headers: dict | None = None,
        extra: dict | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details or {}
        self.headers = headers or {}
        self.extra = extra or {}

    def body(self) -> dict:
        """Return the JSON body of this error."""
        return {
            "error": self.code,
            "message": self.message,
            "details": self.details,
            **self.extra,
        }
