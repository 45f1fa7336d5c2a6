"""SSE framing, for any value: one block each, read back as framed by an EventSource parser."""

import re

import orjson
from hypothesis import given
from hypothesis import strategies as st

from feed import sse

from ..sse import Block, parse, split_lines

FIELD_LINE = re.compile(rb"(data|id|event|retry): ")

ids = st.one_of(st.integers(min_value=0), st.text())
retries = st.none() | st.integers(min_value=0, max_value=10**9)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


def read(stream: bytes) -> list[Block]:
    """Dispatch a stream's blocks the way EventSource does."""
    return list(parse(split_lines([stream])))


def assert_one_block(frame: bytes) -> None:
    """Check that a frame is one block of known fields and line feeds only.

    With no CR in it, splitting at LF is what EventSource's CR/LF/CRLF splitting does.
    """
    assert b"\r" not in frame
    assert frame.endswith(b"\n\n") and b"\n\n" not in frame[:-1]
    assert all(FIELD_LINE.match(line) for line in frame[:-2].split(b"\n"))


def one_line(value: str | int) -> str:
    """What a single-line field keeps of a value."""
    return re.sub(r"[\r\n\0]", "", str(value))


@given(data=st.text(), id_=st.none() | ids, event=st.none() | st.text(), retry=retries)
def test_any_frame_reads_back_as_framed(data, id_, event, retry):
    frame = sse.frame(data, id=id_, event=event, retry=retry)
    assert_one_block(frame)
    assert read(frame) == [
        Block(
            event=None if event is None else one_line(event),
            id=None if id_ is None else one_line(id_),
            data=re.sub(r"\r\n|\r", "\n", data),
            retry=retry,
        )
    ]
    assert sse.frame(data.encode(), id=id_, event=event, retry=retry) == frame


@given(event_id=st.integers(min_value=0), value=json_values)
def test_any_json_change_is_one_change_block(event_id, value):
    frame = sse.change_frame(event_id, orjson.dumps(value))
    assert_one_block(frame)
    [block] = read(frame)
    assert (block.event, block.id, block.retry) == ("change", str(event_id), None)
    assert block.json() == value


@given(st.lists(st.tuples(st.text(), ids, st.text()), max_size=6), st.integers(min_value=0))
def test_frames_in_a_row_stay_apart(frames, cursor):
    stream = b"".join(sse.frame(data, id=i, event=e) for data, i, e in frames)
    stream += sse.heartbeat(cursor)
    assert read(stream) == [
        Block(one_line(e), one_line(i), re.sub(r"\r\n|\r", "\n", data), None)
        for data, i, e in frames
    ] + [Block(None, str(cursor), None, None)]
