"""GET /stream (Server-Sent Events) and GET /api/changes (poll and long poll)."""

import socket
from datetime import datetime

import gevent
from flask import Blueprint, Response, g, request
from gunicorn.http.wsgi import Response as GunicornResponse

from feed import ApiError, drain, runtime
from feed.delivery import Stream, poll
from feed.filters import parse_subscription
from feed.parking import Parked, own_socket
from feed.policy import visible_subscription
from feed.presence import read_roster

from .http import int_arg, json_response, parse_int
from .observe import OBSERVED_STREAM, ObservedStream, long_poll

bp = Blueprint("stream", __name__)
STREAM_PATH = "/stream"
# The environ key that tells a parked stream's request, and how long it took to go live.
PARKED_AFTER = "tidings.parked_after"

STREAM_HEADERS = {
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
}


def _shallow(wsgi_app, app):
    """Answer a stream's request in a greenlet that ends with the request.

    Under gunicorn, once the stream has replayed, it is parked on the loop and the
    connection's greenlet ends: the request is answered in it. Otherwise (PARK_STREAMS=0)
    it is answered in a helper, so the connection's greenlet runs only the server's few
    frames for the stream's life: the pages of Python frame stack the request's dispatch
    touched (access checks, limits, database reads) go back with the helper, and so does
    what the dispatch left on its greenlet (context variables, the thread object logging
    made).
    """

    def call(environ, start_response):
        if environ.get("PATH_INFO") != STREAM_PATH:
            return wsgi_app(environ, start_response)
        started = datetime.now()
        rt = app.extensions["tidings"]
        server_response = getattr(start_response, "__self__", None)
        parks = isinstance(server_response, GunicornResponse) and rt.config["PARK_STREAMS"]

        def dispatch():
            # A stream to be parked ends its connection's greenlet anyway (measured: a
            # helper greenlet costs 15 us an opening).
            if parks:
                return wsgi_app(environ, start_response)
            return gevent.spawn(wsgi_app, environ, start_response).get()

        # Dispatched in a turn: in a reconnect storm, a few at a time (feed.openings).
        body = rt.openings.run(dispatch)
        # The server keeps the environ for the connection's life; the request object the
        # app cached in it is done with once the response is built.
        environ.pop("werkzeug.request", None)
        observed = environ.pop(OBSERVED_STREAM, None)
        if observed is not None and parks:
            _park(observed, body, server_response, environ["gunicorn.socket"])
            # For gunicorn's access log (gunicorn.conf.py), which never sees the stream end.
            environ[PARKED_AFTER] = datetime.now() - started
            # gunicorn closes its socket object and ends the connection's greenlet; the
            # connection itself stays open, held by the parked stream.
            raise StopIteration
        return body

    return call


def _park(observed: ObservedStream, body, server_response: GunicornResponse, sock) -> None:
    """Write a stream's opening and replay through the server, then park it on the loop."""
    stream = observed.body
    # This greenlet ends once the stream is parked: it keeps no stack for the stream's life.
    stream.lives_in_greenlet = False
    observed.start()
    try:
        for chunk in stream.runtime.openings.admitted(stream.opening()):
            server_response.write(chunk)
        parked = Parked(stream, own_socket(sock), server_response.chunked, body.close)
    except BaseException:
        stream.close()
        body.close()
        raise
    parked.start()


@bp.record_once
def _answer_streams_shallow(state) -> None:
    state.app.wsgi_app = _shallow(state.app.wsgi_app, state.app)


def _subscription():
    """Parse the subscription, narrowed to what the caller may read (403 for a topic it may
    not read at all)."""
    rt = runtime()
    subscription = parse_subscription(request.args, rt.tables, rt.custom_topics)
    return visible_subscription(subscription, rt.registry.policy, g.principal)


def _refuse_when_full_or_draining() -> None:
    """Answer 503 when this worker is draining (a stream opened now would be let go at once),
    or holds WORKER_CONNECTIONS streams already: parked streams hold no slot of the server's,
    so the server alone would take them until files run out."""
    rt = runtime()
    if rt.drain.draining:
        # A stream that came back to a stopping worker (keep-alive, or the worker still
        # accepting while its streams go) waits a moment and finds its successor.
        raise drain.refusal()
    held, most = len(rt.drain.streams), rt.config["WORKER_STREAMS"]
    if held >= most:
        raise ApiError(
            503,
            "at_capacity",
            "This server holds as many streams as it can; try again shortly.",
            {"streams": held, "limit": most},
            headers={"Retry-After": "1"},
        )


def _bound_send_buffer(environ: dict) -> None:
    """Cap the kernel's send buffer of a stream's socket (autotuned, it grows to 4 MiB): a
    client that stops reading then holds little kernel memory, and its queue in the hub —
    bounded, conflated — takes over sooner."""
    size = runtime().config["STREAM_SEND_BUFFER"]
    sock = environ.get("gunicorn.socket")
    if size and sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, size)


@bp.get(STREAM_PATH)
def stream():
    """Stream matching events: replay from the cursor, then live, with heartbeats."""
    subscription = _subscription()
    _refuse_when_full_or_draining()
    # A reconnecting EventSource sends Last-Event-ID but keeps the original URL.
    text = request.headers.get("Last-Event-ID") or request.args.get("cursor")
    cursor = parse_int(text, "cursor", low=0) if text else None
    if request.headers.get("Last-Event-ID"):
        runtime().metrics.reconnected("sse")
    _bound_send_buffer(request.environ)
    body = Stream(runtime(), subscription, cursor, g.principal)
    # The stream yields bytes already: hand it to the server as it is, with no re-encoding
    # generator per chunk.
    return Response(
        ObservedStream(body),
        headers=STREAM_HEADERS,
        content_type="text/event-stream",
        direct_passthrough=True,
    )


@bp.get("/api/changes")
def changes():
    """Return matching events after a cursor; with wait>0, hold until one exists."""
    rt = runtime()
    subscription = _subscription()
    cursor = int_arg("cursor", None, low=0)
    limit = int_arg("limit", 500, low=1, high=rt.config["POLL_LIMIT_MAX"])
    wait_text = request.args.get("wait", "0")
    try:
        wait = float(wait_text)
    except ValueError:
        wait = -1.0
    if not 0 <= wait <= rt.config["POLL_WAIT_MAX"]:
        raise ApiError(
            400,
            "invalid_wait",
            f"wait must be seconds between 0 and {rt.config['POLL_WAIT_MAX']:g}.",
            {"wait": wait_text},
        )
    if wait > 0:
        with long_poll():
            return json_response(poll(rt, subscription, cursor, limit, wait, g.principal))
    return json_response(poll(rt, subscription, cursor, limit, wait, g.principal))


@bp.get("/api/presence")
def presence():
    """Return who has a stream open (to any of `topics=`, when given) and the cursor from
    which their join and leave events follow."""
    topics = set(_subscription().topics) if request.args.get("topics") else None
    return json_response(read_roster(runtime(), g.principal, topics))
