"""The replay ceiling: a raw asyncio + uvloop SSE server holding every event in memory.

`python -m bench.replay_ceiling PORT` serves, on 127.0.0.1:PORT, the three requests the storm
makes: `POST /api/publish` (`{"topic", "data"}`: the next id, framed once, written to that
topic's streams), `GET /api/changes?topics=T&cursor=N&limit=L` (the ids after a cursor, or the
head with no cursor) and `GET /stream?topics=T` with `Last-Event-ID` (every held frame of T
after it in one write, `event: ready`, then live). One process, no auth, no filters, no
database, no back-pressure: the least work a replaying feed does.
"""

import asyncio
import itertools
import sys
from bisect import bisect_right
from collections import defaultdict
from urllib.parse import parse_qs, urlsplit

import orjson
import uvloop

from .ceiling import NOT_FOUND, HttpConnection

STREAM_HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
    b"Connection: close\r\n\r\n"
)
READY = b"event: ready\ndata: {}\n\n"
# The listen backlog: the kernel caps it at net.core.somaxconn.
BACKLOG = 65535


class Topic:
    """One topic's events, in id order, and its live streams."""

    def __init__(self) -> None:
        self.ids: list[int] = []
        self.frames: list[bytes] = []
        self.streams: set[asyncio.Transport] = set()


class Feed:
    """Every topic, and the sequence of ids."""

    def __init__(self) -> None:
        self.topics: dict[str, Topic] = defaultdict(Topic)
        self.ids = itertools.count(1)
        self.head = 0

    def publish(self, body: bytes) -> bytes:
        """Hold the event and write its frame to the topic's streams; return the answer."""
        request = orjson.loads(body)
        topic = self.topics[request["topic"]]
        self.head = event_id = next(self.ids)
        # Shaped like a Tidings event, so the frames weigh the same.
        payload = orjson.dumps(
            {"id": event_id, "topic": request["topic"], "op": "PUBLISH", "pk": None,
             "version": None, "row": request["data"], "old": None,
             "at": "2026-12-01T00:00:00.000Z", "mutation": None}
        )  # fmt: skip
        frame = b"id: %d\nevent: change\ndata: %s\n\n" % (event_id, payload)
        topic.ids.append(event_id)
        topic.frames.append(frame)
        for transport in topic.streams:
            transport.write(frame)
        return _json(201, {"id": event_id})

    def changes(self, query: dict) -> bytes:
        """Answer a poll: the ids after the cursor (events carry only their id here)."""
        topic = self.topics[query["topics"][0]]
        if "cursor" not in query:
            return _json(200, {"events": [], "cursor": self.head})
        start = bisect_right(topic.ids, int(query["cursor"][0]))
        ids = topic.ids[start : start + int(query.get("limit", ["500"])[0])]
        return _json(200, {"events": [{"id": i} for i in ids], "cursor": self.head})

    def stream(self, transport: asyncio.Transport, query: dict, cursor: int) -> None:
        """Replay the topic after the cursor in one write, then add the stream to its live set."""
        topic = self.topics[query["topics"][0]]
        replay = topic.frames[bisect_right(topic.ids, cursor) :]
        transport.write(b"".join([STREAM_HEAD, *replay, READY]))
        topic.streams.add(transport)


def _json(status: int, body: dict) -> bytes:
    data = orjson.dumps(body)
    return b"HTTP/1.1 %d OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (
        status,
        len(data),
        data,
    )


class Connection(HttpConnection):
    """One client connection: a stream, or keep-alive requests."""

    def request(self, method: bytes, target: bytes, headers: dict, body: bytes) -> None:
        parts = urlsplit(target.decode())
        query = parse_qs(parts.query)
        if method == b"GET" and parts.path == "/stream":
            cursor = int(headers.get(b"last-event-id", query.get("cursor", ["0"])[0]))
            self.feed.stream(self.transport, query, cursor)
        elif method == b"POST" and parts.path == "/api/publish":
            self.transport.write(self.feed.publish(body))
        elif method == b"GET" and parts.path == "/api/changes":
            self.transport.write(self.feed.changes(query))
        else:
            self.transport.write(NOT_FOUND)

    def connection_lost(self, exc: Exception | None) -> None:
        for topic in self.feed.topics.values():
            topic.streams.discard(self.transport)


async def serve(port: int) -> None:
    """Serve on 127.0.0.1:`port` until killed."""
    loop = asyncio.get_running_loop()
    feed = Feed()
    server = await loop.create_server(lambda: Connection(feed), "127.0.0.1", port, backlog=BACKLOG)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    uvloop.run(serve(int(sys.argv[1])))
