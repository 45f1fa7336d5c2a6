"""The peer: flask-sse as its README sets it up, run by gunicorn + gevent from bench/.peers-venv.

`GET /stream` is flask-sse's blueprint; `POST /api/publish` (`{"data": ...}`) calls
`sse.publish` with the next sequence id. Needs SSE_REDIS_URL.
"""

import itertools
import os
import threading

from flask import Flask, request
from flask_sse import sse

app = Flask(__name__)
app.config["SSE_REDIS_URL"] = os.environ["SSE_REDIS_URL"]
app.register_blueprint(sse, url_prefix="/stream")
ids = itertools.count(1)
# Greenlets interleave between taking an id and its PUBLISH (flask-sse connects to Redis per
# publish): one at a time, so ids reach Redis in ascending order.
ordered = threading.Lock()


@app.post("/api/publish")
def publish():
    """Publish the body's data as a `change` event with the next id."""
    with ordered:
        event_id = next(ids)
        sse.publish(request.get_json()["data"], type="change", id=event_id)
    return {"id": event_id}, 201
