"""GET /monitor (live page), /monitor.json (the same figures), /metrics, and a proxy self-test."""

import gevent
import orjson
from flask import Blueprint, Response, render_template
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from feed import runtime, sse
from feed.figures import figures, public
from feed.monitor import TOPIC

from .http import json_response

bp = Blueprint("monitor", __name__)

# The self-test's blocks and the pause between them: far enough apart to tell a stream
# from a proxy that holds the response back and hands it over in one lump.
SELF_TEST_BLOCKS = 4
SELF_TEST_GAP = 0.4


def _figures() -> dict:
    return public(figures(runtime()))


@bp.get("/monitor")
def page():
    """Render the live monitoring page around the current figures."""
    return render_template("monitor.html", figures=_figures(), topic=TOPIC)


@bp.get("/monitor.json")
def figures_json():
    """Return the monitor's figures, with ten minutes of history."""
    return json_response(_figures(), headers={"Cache-Control": "no-store"})


@bp.get("/metrics")
def metrics():
    """Expose every instrument in Prometheus text format, summed over the node's workers."""
    return Response(generate_latest(runtime().metrics), content_type=CONTENT_TYPE_LATEST)


@bp.get("/monitor/selftest")
def self_test():
    """Send a few timed SSE blocks, so a page can tell streaming from buffering proxies."""

    def blocks():
        yield sse.frame(retry=60_000)
        for n in range(SELF_TEST_BLOCKS):
            if n:
                gevent.sleep(SELF_TEST_GAP)
            yield sse.frame(orjson.dumps({"n": n, "gap_ms": SELF_TEST_GAP * 1000}), event="tick")
        yield sse.frame(b"{}", event="done")

    return Response(
        blocks(),
        content_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
