"""Server-Sent Events framing: pure functions, no I/O."""

import re

_LINE_BREAK = re.compile(rb"\r\n|\r|\n")
_FIELD_UNSAFE = re.compile(rb"[\r\n\0]")


def _field(value: str | bytes | int) -> bytes:
    """Encode a single-line field value, dropping anything that could end the line."""
    if isinstance(value, int):
        return b"%d" % value
    if isinstance(value, str):
        value = value.encode()
    return _FIELD_UNSAFE.sub(b"", value)


def frame(
    data: str | bytes | None = None,
    *,
    id: str | bytes | int | None = None,
    event: str | None = None,
    retry: int | None = None,
) -> bytes:
    """Build one SSE block; every line of data becomes its own `data:` line."""
    parts = []
    if retry is not None:
        parts.append(b"retry: %d\n" % retry)
    if id is not None:
        parts.append(b"id: " + _field(id) + b"\n")
    if event is not None:
        parts.append(b"event: " + _field(event) + b"\n")
    if data is not None:
        if isinstance(data, str):
            data = data.encode()
        for line in _LINE_BREAK.split(data):
            parts.append(b"data: " + line + b"\n")
    return b"".join(parts) + b"\n"


def change_frame(event_id: int, payload: bytes) -> bytes:
    """Frame one change event whose JSON payload is already a single line."""
    return b"id: %d\nevent: change\ndata: %s\n\n" % (event_id, payload)


def heartbeat(cursor: int) -> bytes:
    """Frame a heartbeat: an id-only block that advances lastEventId silently."""
    return b"id: %d\n\n" % cursor
