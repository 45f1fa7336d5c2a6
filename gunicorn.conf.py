"""Gunicorn settings: gevent workers, and the embedded Redis owned by the master."""

from gevent import monkey

# Patch in the master too, so workers inherit no unpatched ssl or socket modules.
monkey.patch_all()

import gc  # noqa: E402
import glob  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402

import worker  # noqa: E402
from blueprints.stream import PARKED_AFTER  # noqa: E402
from feed.embedded import EmbeddedRedis  # noqa: E402

bind = f"{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('PORT', '8000')}"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
worker_class = "worker.Worker"
# Each open stream is one connection; the process file limit is the real ceiling.
worker_connections = int(os.environ.get("WORKER_CONNECTIONS", "10000"))
# Connections the kernel queues until a worker accepts them: clients that reconnect at once
# (a restart, a network blip) beyond it wait for retransmitted SYNs, or are reset. The kernel
# caps it at net.core.somaxconn.
backlog = int(os.environ.get("LISTEN_BACKLOG", "4096"))
timeout = 30
# A stopped worker lets its streams go at once (worker.drain_on_stop); this bounds the
# requests still in flight.
graceful_timeout = int(os.environ.get("GRACEFUL_TIMEOUT", "3"))
keepalive = 5
# Several servers may run side by side (tests, benchmarks): no shared control socket.
control_socket_disable = True
wsgi_app = "wsgi:app"

_embedded: EmbeddedRedis | None = None
_metrics_dir: str | None = None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _fresh_metrics_dir(instance_path: str) -> str:
    """Return an empty metrics directory of this master's own, removing dead masters' ones."""
    for old in glob.glob(os.path.join(instance_path, "metrics-*")):
        pid = old.rsplit("-", 1)[-1]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(old, ignore_errors=True)
    path = os.path.join(instance_path, f"metrics-{os.getpid()}")
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path)
    return path


def on_starting(server):
    """Start the private Redis when no REDIS_URL is given (`flask db upgrade` made the tables)."""
    global _embedded, _metrics_dir
    from app import create_app

    # Workers inherit the limit: each open stream is one file.
    for warning in (worker.make_room_for(worker_connections), worker.check_backlog(backlog)):
        if warning:
            server.log.warning(warning)

    # The master keeps in-memory figures; only workers write the shared files.
    os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
    app = create_app()
    _metrics_dir = _fresh_metrics_dir(app.instance_path)
    # Workers' figures are summed from files here, so /metrics counts every worker.
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = _metrics_dir
    if not os.environ.get("REDIS_URL"):
        _embedded = EmbeddedRedis(app.instance_path)
        _embedded.start()
        # Workers read it when they build their app.
        os.environ["REDIS_URL"] = _embedded.url
        server.log.info("embedded redis on %s", _embedded.url)
    app.extensions["tidings"].engine.dispose()


def post_worker_init(process):
    """Drain on SIGTERM instead of holding streams open until the graceful timeout."""
    worker.drain_on_stop(process)


def post_request(process, req, environ, resp):
    """Log a stream parked on the loop (gunicorn never sees it end); let a stopping worker's
    connections go once they answered."""
    parked_after = environ.get(PARKED_AFTER)
    if parked_after is not None:
        process.log.access(resp, req, environ, parked_after)
    worker.KEEPALIVES.answered(environ.get("gunicorn.socket"))


def child_exit(server, worker):
    """Drop a dead worker's live gauges (connections, lag) from the summed figures."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):
    """Stop the private Redis with the app, and remove the metrics directory."""
    # Frozen, the master's objects are skipped by its last collection at exit (measured: up
    # to 2.7 s on a loaded box, which a SIGTERM had to wait out). Only now: frozen before
    # the workers fork, it slowed them down.
    gc.freeze()
    if _embedded is not None:
        _embedded.stop()
    if _metrics_dir is not None:
        shutil.rmtree(_metrics_dir, ignore_errors=True)
