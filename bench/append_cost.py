"""What the ordered outbox costs: committed writes/s for a live model (row + event appended
under the writer lock, then published) against the same model without the feed, with
concurrent writers, on SQLite and PostgreSQL.

Run: .venv/bin/python -m bench.append_cost
"""

import json
import platform
import tempfile
import threading
import time
from pathlib import Path

import sqlalchemy as sa

from app import create_app
from feed import LiveMixin, runtime
from feed.embedded import EmbeddedRedis
from feed.values import utcnow
from models import db
from tests import postgres
from tests.servers import free_port

WRITERS = 8
SECONDS = 4.0
RESULTS = Path(__file__).parent / "results"


class PlainRow(db.Model):
    """A row that is not live: no capture."""

    __tablename__ = "bench_plain_rows"
    id = sa.Column(sa.Integer, primary_key=True)
    version = sa.Column(sa.Integer, nullable=False, default=1)
    updated_at = sa.Column(sa.DateTime, nullable=False, default=utcnow)
    name = sa.Column(sa.String(80))
    price = sa.Column(sa.Numeric(10, 2))


class LiveRow(LiveMixin, db.Model):
    """The same row, live: captured, logged, published."""

    __tablename__ = "bench_live_rows"
    name = sa.Column(sa.String(80))
    price = sa.Column(sa.Numeric(10, 2))


def _run(app, write_one) -> float:
    """Return committed writes per second with WRITERS threads for SECONDS."""
    counts = [0] * WRITERS
    stop = time.monotonic() + SECONDS

    def writer(slot: int) -> None:
        with app.app_context():
            n = 0
            while time.monotonic() < stop:
                write_one(slot, n)
                n += 1
            counts[slot] = n

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(WRITERS)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(counts) / (time.monotonic() - started)


def measure(database_url: str, redis_url: str) -> dict:
    """Measure live and plain inserts on one database."""
    app = create_app({"SQLALCHEMY_DATABASE_URI": database_url, "REDIS_URL": redis_url})
    with app.app_context():
        db.create_all()

    def live(slot: int, n: int) -> None:
        with runtime().write() as session:
            session.add(LiveRow(name=f"w{slot}-{n}", price=1))

    def plain_row(slot: int, n: int) -> None:
        with runtime().write() as session:
            session.add(PlainRow(name=f"w{slot}-{n}", price=1))

    plain_rate = _run(app, plain_row)
    live_rate = _run(app, live)
    with app.app_context():
        with runtime().read() as conn:
            bounds = runtime().log.bounds(conn)
            logged = conn.execute(sa.select(sa.func.count()).select_from(runtime().log.table))
            logged = logged.scalar()
        runtime().close()
    return {
        "plain_writes_per_s": round(plain_rate),
        "live_writes_per_s": round(live_rate),
        "live_over_plain": round(live_rate / plain_rate, 3),
        "events_logged": logged,
        "ids_gapless": bounds.tail == 1 and bounds.head == logged,
    }


def main() -> None:
    """Measure on SQLite and, where the machine has it, PostgreSQL; write the results."""
    results = {"writers": WRITERS, "seconds": SECONDS, "machine": platform.platform()}
    with tempfile.TemporaryDirectory() as tmp:
        redis = EmbeddedRedis(Path(tmp) / "redis")
        redis.start()
        try:
            results["sqlite"] = measure(f"sqlite:///{tmp}/append.db", redis.url)
            if postgres.available():
                server = postgres.PostgresServer(free_port()).start()
                try:
                    url = server.create_database("append_cost")
                    results["postgresql"] = measure(url, redis.url)
                finally:
                    server.stop()
        finally:
            redis.stop()
    results["at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "append_cost.json").write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
