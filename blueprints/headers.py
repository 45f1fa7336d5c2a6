"""Security headers: on every response, and a Content-Security-Policy on HTML pages."""

from flask import Flask, Response

# The pages load ES modules and styles from /static, fetch /api, and open EventSource on
# /stream: nothing inline runs, nothing comes from elsewhere, and no page may be framed.
CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
        "form-action 'self'",
    )
)
EVERY_RESPONSE = {
    "X-Content-Type-Options": "nosniff",
    # Same-origin requests keep their Referer; no URL of ours ever leaves for another origin.
    "Referrer-Policy": "same-origin",
    # For browsers that predate frame-ancestors.
    "X-Frame-Options": "DENY",
}


def init_app(app: Flask) -> None:
    """Add the security headers to every response of the app."""
    app.after_request(secure)


def secure(response: Response) -> Response:
    """Set the headers every response carries, and the page policy on HTML."""
    for name, value in EVERY_RESPONSE.items():
        response.headers.setdefault(name, value)
    if response.mimetype == "text/html":
        response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
    return response
