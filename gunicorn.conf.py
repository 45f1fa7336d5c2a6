"""Gunicorn settings: gevent workers, and the embedded Redis owned by the master."""

from gevent import monkey

# Patch in the master too, so workers inherit no unpatched ssl or socket modules.
monkey.patch_all()

import os  # noqa: E402

from feed.embedded import EmbeddedRedis  # noqa: E402

bind = f"{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('PORT', '8000')}"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
worker_class = "gevent"
# Each open stream is one connection; the process file limit is the real ceiling.
worker_connections = int(os.environ.get("WORKER_CONNECTIONS", "10000"))
timeout = 30
# Streams never end on their own: give them a moment, then close them.
graceful_timeout = int(os.environ.get("GRACEFUL_TIMEOUT", "3"))
keepalive = 5
# Several servers may run side by side (tests, benchmarks): no shared control socket.
control_socket_disable = True
wsgi_app = "wsgi:app"

_embedded: EmbeddedRedis | None = None


def on_starting(server):
    """Start the private Redis when no REDIS_URL is given, and create missing tables."""
    global _embedded
    from app import create_app
    from models import db

    app = create_app()
    if not os.environ.get("REDIS_URL"):
        _embedded = EmbeddedRedis(app.instance_path)
        _embedded.start()
        # Workers read it when they build their app.
        os.environ["REDIS_URL"] = _embedded.url
        server.log.info("embedded redis on %s", _embedded.url)
    with app.app_context():
        db.create_all()
        db.engine.dispose()


def on_exit(server):
    """Stop the private Redis with the app."""
    if _embedded is not None:
        _embedded.stop()
