"""The fan-out ceiling: a raw asyncio + uvloop SSE server, the least work a Redis-fed feed does.

`python -m bench.ceiling PORT REDIS_URL` serves `GET /stream` (every published event, after an
`event: ready`) and `POST /api/publish` (`{"data": ...}`: PUBLISHed with the next sequence id).
One Redis subscription feeds every stream; each message becomes one SSE frame, formatted once
and written to every connected transport, the frames of each 2 ms in one write (Tidings also
batches what a wake-up brings; one write per frame costs the readers more than the server).
No auth, no filters, no replay, no back-pressure.
"""

import asyncio
import itertools
import sys

import orjson
import redis.asyncio as redis
import uvloop

CHANNEL = "ceiling"
STREAM_HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
    b"Connection: close\r\n\r\nevent: ready\ndata: {}\n\n"
)
# Frames received within this long go out in one write per stream.
BATCH_SECONDS = 0.002
NOT_FOUND = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"


class Feed:
    """The connected streams, the Redis connections and the sequence of ids."""

    def __init__(self, redis_url: str):
        self.publisher = redis.Redis.from_url(redis_url, single_connection_client=True)
        self.subscriber = redis.Redis.from_url(redis_url)
        self.streams: set[asyncio.Transport] = set()
        self.ids = itertools.count(1)
        self.pending: list[bytes] = []

    async def publish(self, transport: asyncio.Transport, body: bytes) -> None:
        """PUBLISH the body's data with the next id, then answer 201."""
        # The id is taken before the first await and the one connection's lock is FIFO, so
        # ids reach Redis in ascending order.
        event_id = next(self.ids)
        data = orjson.dumps(orjson.loads(body)["data"])
        await self.publisher.publish(CHANNEL, b"%d %s" % (event_id, data))
        answer = b'{"id":%d}' % event_id
        transport.write(
            b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(answer), answer)
        )

    async def relay(self) -> None:
        """Turn each message of the one subscription into a frame and write it to every stream."""
        pubsub = self.subscriber.pubsub()
        await pubsub.subscribe(CHANNEL)
        async for message in pubsub.listen():
            if message["type"] != "message":
                continue
            event_id, _, data = message["data"].partition(b" ")
            if not self.pending:
                asyncio.get_running_loop().call_later(BATCH_SECONDS, self.flush)
            self.pending.append(b"id: %s\nevent: change\ndata: %s\n\n" % (event_id, data))

    def flush(self) -> None:
        """Write the frames of the last BATCH_SECONDS to every stream, in one write each."""
        chunk = b"".join(self.pending)
        self.pending.clear()
        for transport in self.streams:
            transport.write(chunk)


class HttpConnection(asyncio.Protocol):
    """A keep-alive HTTP/1.1 connection cut into requests: enough for the bench's clients."""

    def __init__(self, feed):
        self.feed = feed
        self.buffer = b""

    def connection_made(self, transport: asyncio.Transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
            lines = self.buffer[:end].split(b"\r\n")
            headers = dict(
                (name.strip().lower(), value.strip())
                for name, _, value in (line.partition(b":") for line in lines[1:])
            )
            length = int(headers.get(b"content-length", 0))
            if len(self.buffer) < end + 4 + length:
                return
            body = self.buffer[end + 4 : end + 4 + length]
            self.buffer = self.buffer[end + 4 + length :]
            method, target = lines[0].split(b" ")[:2]
            self.request(method, target, headers, body)

    def request(self, method: bytes, target: bytes, headers: dict, body: bytes) -> None:
        """Answer one request."""
        raise NotImplementedError


class Connection(HttpConnection):
    """One client connection: a stream, or keep-alive publish requests."""

    def request(self, method: bytes, target: bytes, headers: dict, body: bytes) -> None:
        if method == b"GET" and target.startswith(b"/stream"):
            self.transport.write(STREAM_HEAD)
            self.feed.streams.add(self.transport)
        elif method == b"POST" and target == b"/api/publish":
            asyncio.ensure_future(self.feed.publish(self.transport, body))
        else:
            self.transport.write(NOT_FOUND)

    def connection_lost(self, exc: Exception | None) -> None:
        self.feed.streams.discard(self.transport)


async def serve(port: int, redis_url: str) -> None:
    """Serve streams and publishes on 127.0.0.1:`port` until killed."""
    feed = Feed(redis_url)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Connection(feed), "127.0.0.1", port, backlog=4096)
    async with server:
        await feed.relay()


if __name__ == "__main__":
    uvloop.run(serve(int(sys.argv[1]), sys.argv[2]))
