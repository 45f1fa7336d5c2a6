"""The WSGI entry point: gevent patches the standard library before anything else loads."""

from gevent import monkey

monkey.patch_all()

import worker  # noqa: E402
from app import create_app  # noqa: E402

worker.prepare()
app = create_app()
# The serving process owns the Redis listener, the relay and retention.
app.extensions["tidings"].start()
worker.settle()
