"""Who may reach which route: resolved once per request, before any view runs."""

from flask import Flask, current_app, g, render_template, request
from werkzeug.middleware.proxy_fix import ProxyFix

from feed import ApiError
from feed.principal import NOBODY

from . import instance_files
from .resolve import principal, refused
from .secret import same

# Open to anyone: liveness, readiness, the static files of the sign-in page, and the API's
# description (the contract, not data).
OPEN = frozenset({"static", "ops.healthz", "ops.readyz", "openapi.document_json"})
# Pages that show nobody the sign-in form instead.
SIGN_IN_PAGES = frozenset({"dashboard.index", "monitor.page"})
MONITOR_ENDPOINTS = frozenset({"monitor.page", "monitor.figures_json", "monitor.self_test"})
MONITOR_ROLES = ("admin", "manager")
LOGIN = "auth.login"


def init_app(app: Flask) -> None:
    """Resolve every request's principal, trust the configured proxies, and have a key."""
    if not app.config.get("SECRET_KEY"):
        app.config["SECRET_KEY"] = instance_files.secret_key(app.instance_path)
    x_for, x_proto = app.config["PROXY_FIX_X_FOR"], app.config["PROXY_FIX_X_PROTO"]
    if x_for or x_proto:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=x_for, x_proto=x_proto)
    app.before_request(admit)


def _metrics_gate() -> None:
    token = current_app.config["METRICS_TOKEN"]
    given = request.headers.get("Authorization", "")
    if token and not same(given, f"Bearer {token}"):
        raise refused("/metrics needs the metrics token as Authorization: Bearer <token>.")


def admit():
    """Set `g.principal`; answer nobody with 401 (or a page's sign-in form), and the wrong
    role with 403."""
    g.principal = NOBODY
    endpoint = request.endpoint
    if endpoint in OPEN:
        return None
    if endpoint == "monitor.metrics":
        return _metrics_gate()
    # With PUBLISH_TOKEN set, /api/publish takes that server credential, checked by the route.
    if endpoint == "api.publish" and current_app.config["PUBLISH_TOKEN"]:
        return None
    g.principal = principal()
    if endpoint == LOGIN:
        return None
    if not g.principal.authenticated:
        if endpoint in SIGN_IN_PAGES:
            return render_template("signin.html")
        raise refused("Sign in, or send an API token as Authorization: Bearer <token>.")
    if endpoint in MONITOR_ENDPOINTS and g.principal.role not in MONITOR_ROLES:
        raise ApiError(403, "forbidden", "The monitor is for admins and managers.")
    return None
