"""A small SSE client for tests: parses blocks the way a browser's EventSource does."""

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import orjson

from .servers import http


@dataclass
class Block:
    """One dispatched SSE block."""

    event: str | None
    id: str | None
    data: str | None
    retry: int | None

    def json(self):
        """Parse the data as JSON."""
        return orjson.loads(self.data)


def split_lines(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """Cut a byte stream into lines at LF, whatever the chunk boundaries.

    requests' iter_lines(delimiter=) yields a spurious empty line whenever a chunk ends
    with the delimiter, which would end an SSE block early.
    """
    buffer = b""
    for chunk in chunks:
        *complete, buffer = (buffer + chunk).split(b"\n")
        yield from complete


def parse(lines: Iterator[bytes]) -> Iterator[Block]:
    """Turn raw lines into blocks; a blank line ends each block."""
    event = id_ = retry = None
    data: list[str] = []
    seen = False
    for raw in lines:
        line = raw.decode()
        if line == "":
            if seen:
                yield Block(event, id_, "\n".join(data) if data else None, retry)
            event = id_ = retry = None
            data = []
            seen = False
            continue
        seen = True
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "data":
            data.append(value)
        elif field == "event":
            event = value
        elif field == "id":
            id_ = value
        elif field == "retry":
            retry = int(value)


class SseStream:
    """An open /stream response, read block by block."""

    def __init__(
        self,
        base_url: str,
        query: str,
        last_event_id: str | None = None,
        timeout: float = 10,
        headers: dict | None = None,
    ):
        headers = dict(headers or {})
        if last_event_id:
            headers["Last-Event-ID"] = last_event_id
        self.response = http(base_url).get(
            f"{base_url}/stream?{query}", headers=headers, stream=True, timeout=timeout
        )
        self.response.raise_for_status()
        self.blocks = parse(split_lines(self.response.iter_content(chunk_size=None)))

    def next(self) -> Block:
        """Return the next block."""
        return next(self.blocks)

    def until(self, event: str) -> list[Block]:
        """Read blocks up to and including the first of the given event type."""
        seen = []
        for block in self.blocks:
            seen.append(block)
            if block.event == event:
                return seen
        raise AssertionError(f"stream ended before {event!r}")

    def close(self) -> None:
        """Close the connection."""
        self.response.close()

    def __enter__(self) -> "SseStream":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
