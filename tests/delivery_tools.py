"""Shared pieces of the delivery-guarantee tests: a random writer, stream followers, the log."""

import datetime as dt
import random
import socket
import struct
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import requests

from feed.values import iso

from .servers import http, server_at
from .sse import SseStream, parse, split_lines

SHIFTS = ("morning", "afternoon", "night")
# The tables the writer changes; bread_types only gets updates after its first rows.
WRITTEN_TABLES = ("production_logs", "sales_logs", "shift_feedback", "bread_types")


# Subscriptions for followers: everything written, a filter, a projection.
QUERIES = (
    "topics=sales_logs,production_logs,shift_feedback,bread_types",
    "topics=sales_logs&sales_logs.shift=eq.night",
    "topics=production_logs,shift_feedback&production_logs.select=id,quantity",
)

SALE = {"quantity": 3, "unit_price": 4.0, "recorded_by": "test"}


def sell(url: str, bread_type: int, shift: str) -> int:
    """Record one sale and return its event id."""
    body = SALE | {"bread_type_id": bread_type, "shift": shift}
    response = http(url).post(f"{url}/api/sales_logs", json=body, timeout=10)
    assert response.status_code == 201, response.text
    return response.json()["event"]


def next_change(stream: SseStream, timeout: float) -> dict:
    """Return the next change on a stream, failing when none comes in time (heartbeats
    keep the connection busy, so the read timeout alone would never fire)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        block = stream.next()
        if block.event == "change":
            return block.json()
    raise AssertionError(f"no change within {timeout:g}s")


def wait_for(
    predicate: Callable[[], object],
    timeout: float = 10.0,
    what: str = "the condition",
    seen: Callable[[], str] | None = None,
) -> object:
    """Poll a predicate until it returns something truthy, or fail naming what was awaited
    (and what `seen` says was there instead)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            instead = f"; saw {seen()}" if seen is not None else ""
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}{instead}")
        time.sleep(0.05)


def head(url: str) -> int:
    """Return the log head: a poll without a cursor starts there and, finding nothing,
    answers with it. (A snapshot's cursor is only as new as its own table's last change.)"""
    response = http(url).get(f"{url}/api/changes", params={"topics": "bread_types"}, timeout=10)
    response.raise_for_status()
    return response.json()["cursor"]


def changes(url: str, query: str, cursor: int, headers: dict | None = None) -> list[dict]:
    """Return every event a poller with this subscription gets after the cursor (as the
    admin, or as whoever the headers sign in)."""
    events: list[dict] = []
    for _ in range(1000):
        response = http(url).get(
            f"{url}/api/changes?{query}",
            params={"cursor": cursor, "limit": 1000},
            headers=headers,
            timeout=30,
        )
        assert response.status_code == 200, response.text
        body = response.json()
        events.extend(body["events"])
        cursor = body["cursor"]
        if not body["more"]:
            return events
    raise AssertionError("the log did not end")


def ids(events: list[dict]) -> list[int]:
    """Return the ids of events, in the order given."""
    return [event["id"] for event in events]


def create_bread_types(url: str, count: int = 4) -> list[int]:
    """Create bread types for the other tables to point at; return their ids."""
    created = []
    for n in range(count):
        response = http(url).post(
            f"{url}/api/bread_types",
            json={"name": f"bread-{n}-{random.random()}", "price": 3 + n},
            timeout=10,
        )
        assert response.status_code == 201, response.text
        created.append(response.json()["row"]["id"])
    return created


@dataclass
class Written:
    """One acknowledged write: the table, the op, the row id, the event id it got and the
    Idempotency-Key it was sent with, if any."""

    table: str
    op: str
    pk: int
    event: int
    key: str | None = None


def _moment(serial: int, token: str) -> str:
    """Return a datetime unique to one call of one writer."""
    seconds = int(token, 16) % 10**6 * 1000 + serial
    return iso(dt.datetime(2026, 1, 1) + dt.timedelta(seconds=seconds))


@dataclass
class Writer:
    """Commit random inserts, updates and deletes over HTTP, remembering every acknowledgement.

    Each writer only touches rows it created, so several can run side by side without
    conflicts. With `retry_seconds`, each write carries an Idempotency-Key and is sent again
    under it while the connection fails or a proxy answers 502/503, as a client behind a
    proxy does, for that long at most.
    """

    url: str
    bread_types: list[int]
    seed: int
    tables: tuple[str, ...] = WRITTEN_TABLES
    # Stores the sales and production rows go to at random (none: the writer's own).
    stores: tuple[int, ...] = ()
    written: list[Written] = field(default_factory=list)
    retry_seconds: float = 0.0

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.http = server_at(self.url).session()
        self.rows: dict[str, list[int]] = {t: [] for t in self.tables}
        self.serial = 0
        # Unique per writer, so two writers never set a row to equal values.
        self.token = uuid.uuid4().hex[:8]
        # Writes sent more than once.
        self.retries = 0

    def values(self, table: str) -> dict:
        """Return random column values for a new or changed row; every call differs from
        the last, so an update always changes the row."""
        rng = self.rng
        self.serial += 1
        tag = f"{self.token}-{self.serial}"
        if table == "bread_types":
            return {"name": tag, "price": round(rng.uniform(2, 9), 2), "active": rng.random() < 0.8}
        if table == "shift_feedback":
            return {"shift": rng.choice(SHIFTS), "note": tag, "mood": rng.randint(1, 5)}
        values = {
            "bread_type_id": rng.choice(self.bread_types),
            "quantity": rng.randint(1, 100),
            "shift": rng.choice(SHIFTS),
            # The server names who recorded a row; this column, unique per call, makes every
            # update a change.
            "created_at": _moment(self.serial, self.token),
        }
        if table == "sales_logs":
            values["unit_price"] = round(rng.uniform(2, 9), 2)
        if self.stores:
            values["store_id"] = rng.choice(self.stores)
        return values

    def step(self) -> Written:
        """Make one random change and return its acknowledgement."""
        rng = self.rng
        table = rng.choice(self.tables)
        rows = self.rows[table] if table != "bread_types" else self.bread_types
        roll = rng.random()
        key = uuid.uuid4().hex if self.retry_seconds else None
        if table == "bread_types" or (rows and roll < 0.3):
            pk = rng.choice(rows)
            response = self.send("PATCH", f"/api/{table}/{pk}", key, self.values(table))
            op = "UPDATE"
        elif len(rows) > 3 and roll < 0.5:
            pk = rows.pop(rng.randrange(len(rows)))
            response = self.send("DELETE", f"/api/{table}/{pk}", key)
            op = "DELETE"
        else:
            response = self.send("POST", f"/api/{table}", key, self.values(table))
            op = "INSERT"
        assert response.status_code in (200, 201), response.text
        body = response.json()
        assert isinstance(body["event"], int), body
        if op == "INSERT":
            pk = body["row"]["id"]
            rows.append(pk)
        done = Written(table, op, pk, body["event"], key)
        self.written.append(done)
        return done

    def send(
        self, method: str, path: str, key: str | None, body: dict | None = None
    ) -> requests.Response:
        """Send one write, again under its key while the connection fails or the proxy
        answers 502/503, until `retry_seconds` have passed."""
        headers = {"Idempotency-Key": key} if key else {}
        deadline = time.monotonic() + self.retry_seconds
        while True:
            try:
                response = self.http.request(
                    method, self.url + path, json=body, headers=headers, timeout=30
                )
                if response.status_code not in (502, 503) or time.monotonic() > deadline:
                    return response
            except requests.ConnectionError:
                if time.monotonic() > deadline:
                    raise
            self.retries += 1
            time.sleep(0.1)

    def run(self, count: int, pause: float = 0.0) -> None:
        """Make `count` changes, optionally pausing between them."""
        for _ in range(count):
            self.step()
            if pause:
                time.sleep(pause)

    def close(self) -> None:
        """Release the HTTP connection pool."""
        self.http.close()


def run_writers(
    url: str,
    bread_types: list[int],
    total: int,
    *,
    threads: int = 2,
    tables: tuple[str, ...] = WRITTEN_TABLES,
    pause: float = 0.0,
    first_seed: int = 0,
    stores: tuple[int, ...] = (),
) -> list[Written]:
    """Run writers in threads until `total` changes are acknowledged; return them in id order.

    Writers running at the same time need distinct seeds: equal seeds write equal values.
    """
    writers = [
        Writer(url, bread_types, seed=first_seed + n, tables=tables, stores=stores)
        for n in range(threads)
    ]
    workers = [
        threading.Thread(
            target=w.run, args=(total // threads + (n < total % threads), pause), daemon=True
        )
        for n, w in enumerate(writers)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
        assert not worker.is_alive(), "a writer did not finish"
    for writer in writers:
        writer.close()
    written = [w for writer in writers for w in writer.written]
    assert len(written) == total, "a writer failed"
    return sorted(written, key=lambda w: w.event)


# What a client meets while a server, a worker or the network is away; it tries again.
OUTAGES = (requests.ConnectionError, requests.exceptions.ChunkedEncodingError, requests.Timeout)


class Follower(threading.Thread):
    """An SSE subscriber that drops its connection at random points and resumes with
    Last-Event-ID, recording every change it receives, until it has seen `target`.

    Like a browser's EventSource, it also comes back after the server went away (or its
    connection broke, stalled past `timeout` or answered 503). `headers` sign it in as
    someone other than the admin.
    """

    def __init__(
        self,
        url: str,
        query: str,
        cursor: int,
        seed: int,
        *,
        deadline: float,
        drops: bool = True,
        headers: dict | None = None,
        timeout: float = 10,
    ):
        super().__init__(daemon=True)
        self.url = url
        self.headers = headers or {}
        self.timeout = timeout
        self.drops = drops
        self.query = query
        self.last_id = str(cursor)
        self.rng = random.Random(seed)
        self.deadline = deadline
        self.events: list[dict] = []
        self.resets: list[dict] = []
        self.connections = 0
        self.outages = 0
        self.target: int | None = None
        self.error: BaseException | None = None

    def done(self) -> bool:
        """Tell whether the follower's cursor reached the target."""
        return self.target is not None and int(self.last_id) >= self.target

    def run(self) -> None:
        try:
            while not self.done() and time.monotonic() < self.deadline:
                self.connections += 1
                try:
                    self.follow_once()
                except OUTAGES:
                    self.outages += 1
                except requests.HTTPError as exc:
                    if exc.response.status_code != 503:
                        raise
                    self.outages += 1
                    time.sleep(0.1)
                time.sleep(self.rng.random() * 0.05)
        except BaseException as exc:  # reported by the test thread
            self.error = exc

    def follow_once(self) -> None:
        """Read one connection for a random number of blocks or a random time, then drop it."""
        budget = self.rng.randint(1, 120) if self.drops else -1
        lifetime = self.rng.uniform(0.2, 2.0) if self.drops else self.deadline
        drop_at = min(self.deadline, time.monotonic() + lifetime)
        with SseStream(
            self.url, self.query, self.last_id, timeout=self.timeout, headers=self.headers
        ) as stream:
            for block in stream.blocks:
                if block.id is not None:
                    self.last_id = block.id
                if block.event == "change":
                    self.events.append(block.json())
                elif block.event == "reset":
                    self.resets.append(block.json())
                budget -= 1
                if budget == 0 or self.done() or time.monotonic() > drop_at:
                    return


def follow(
    url: str,
    start: int,
    count: int,
    deadline: float,
    drops: bool = True,
    kind: type[Follower] = Follower,
) -> list[Follower]:
    """Start reconnecting clients (stream followers, or another kind) over the shared queries."""
    followers = [
        kind(url, QUERIES[n % len(QUERIES)], start, seed=n, deadline=deadline, drops=drops)
        for n in range(count)
    ]
    for follower in followers:
        follower.start()
    return followers


class RawStream:
    """A /stream request on a bare socket that reads only when asked to.

    It speaks HTTP/1.0, so the body is the event stream itself, unchunked; a small
    receive buffer makes the server's writes block as soon as the client stops reading.
    """

    def __init__(self, url: str, query: str, *, receive_buffer: int = 4096, timeout: float = 10):
        parts = urlsplit(url)
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        self.sock.settimeout(timeout)
        self.sock.connect((parts.hostname, parts.port))
        bearer = http(url).headers["Authorization"]
        request = (
            f"GET /stream?{query} HTTP/1.0\r\nHost: {parts.netloc}\r\n"
            f"Authorization: {bearer}\r\n\r\n"
        )
        self.sock.sendall(request.encode())
        self.received = 0
        self.blocks = parse(split_lines(self._body()))

    def _body(self) -> Iterator[bytes]:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = self.sock.recv(65536)
            assert chunk, "the server closed the stream before its headers"
            data += chunk
        status, _, rest = data.partition(b"\r\n\r\n")
        assert status.split(b"\r\n")[0].split()[1] == b"200", status
        self.received += len(rest)
        yield rest
        while chunk := self.sock.recv(65536):
            self.received += len(chunk)
            yield chunk

    def close(self, reset: bool = False) -> None:
        """Close the socket; with reset, abort the connection as a vanished client would."""
        if reset:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()


def finish(url: str, followers: list["Follower"], start: int, deadline: float) -> int:
    """Let the clients reach the log head, check each got exactly its events; return the head."""
    final = head(url)
    for follower in followers:
        follower.target = final
    for follower in followers:
        follower.join(timeout=max(0.0, deadline - time.monotonic()) + 5)
    from .faults.invariants import check_delivery

    check_delivery(url, followers, start)
    return final


def publish_padded(server, count: int, chars: int, pause: float = 0.0) -> None:
    """Publish `count` events of about `chars` characters each to the `bench` topic."""
    with server.session() as session:
        for n in range(count):
            body = {"topic": "bench", "data": {"n": n, "pad": "x" * chars}}
            response = session.post(f"{server.url}/api/publish", json=body, timeout=30)
            assert response.status_code == 201, response.text
            time.sleep(pause)
