"""SSE framing: what a spec-following EventSource reads back is exactly what was framed."""

import re
from dataclasses import dataclass, field

import orjson
import pytest

from feed import sse

NASTY = [
    "plain",
    "two\nlines",
    "carriage\rreturn",
    "crlf\r\nline",
    "trailing newline\n",
    "\n\nleading blank lines",
    "null\0byte",
    "injected\n\nid: 666\nevent: reset\ndata: {}\n\n",
    "injected\r\rretry: 1\r\r",
    "injected\r\n\r\nevent: ready\r\n",
    ": looks like a comment",
    "data: looks like a field",
    "",
    "unicode é 漢字 \u2028 \u0085",
]


@dataclass
class Dispatched:
    """One event as EventSource dispatches it."""

    type: str
    data: str
    last_event_id: str


@dataclass
class EventSourceParser:
    """The WHATWG EventSource parsing algorithm (html.spec.whatwg.org, 9.2.6)."""

    last_event_id: str = ""
    retry: int | None = None
    dispatched: list[Dispatched] = field(default_factory=list)

    def feed(self, stream: bytes) -> list[Dispatched]:
        """Parse a whole stream; return the events dispatched."""
        data, event_type = "", ""
        for line in re.split(r"\r\n|\r|\n", stream.decode("utf-8"))[:-1]:
            if line == "":
                if data:
                    self.dispatched.append(
                        Dispatched(event_type or "message", data[:-1], self.last_event_id)
                    )
                data, event_type = "", ""
                continue
            if line.startswith(":"):
                continue
            name, colon, value = line.partition(":")
            if colon and value.startswith(" "):
                value = value[1:]
            if name == "event":
                event_type = value
            elif name == "data":
                data += value + "\n"
            elif name == "id" and "\0" not in value:
                self.last_event_id = value
            elif name == "retry" and value.isascii() and value.isdigit():
                self.retry = int(value)
        return self.dispatched


def single_line(text: str) -> str:
    """What a single-line field keeps of a value."""
    return re.sub(r"[\r\n\0]", "", text)


@pytest.mark.parametrize("value", NASTY)
def test_data_round_trips_and_injects_nothing(value):
    parser = EventSourceParser()
    events = parser.feed(sse.frame(value, id=7, event="change"))
    expected = re.sub(r"\r\n|\r", "\n", value)
    assert events == [Dispatched("change", expected, "7")]
    assert parser.retry is None


@pytest.mark.parametrize("value", NASTY)
def test_id_and_event_fields_cannot_break_the_line(value):
    parser = EventSourceParser()
    events = parser.feed(sse.frame("payload", id=value, event=value))
    assert len(events) == 1
    assert events[0].data == "payload"
    assert events[0].last_event_id == single_line(value)
    assert events[0].type == (single_line(value) or "message")
    assert parser.retry is None


def test_bytes_data_and_multi_line_json():
    body = orjson.dumps({"a": 1}, option=orjson.OPT_INDENT_2)
    frame = sse.frame(body, event="ready")
    assert frame.count(b"data: ") == body.count(b"\n") + 1
    [event] = EventSourceParser().feed(frame)
    assert orjson.loads(event.data) == {"a": 1}


@pytest.mark.parametrize("value", NASTY)
def test_change_frame_of_hostile_event_is_one_event(value):
    data = {"id": 12, "topic": "t", "op": "PUBLISH", "row": {value: value}, "mutation": value}
    frame = sse.change_frame(12, orjson.dumps(data))
    assert frame.count(b"\n\n") == 1 and frame.endswith(b"\n\n")
    parser = EventSourceParser()
    [event] = parser.feed(frame)
    assert event.type == "change" and event.last_event_id == "12"
    assert orjson.loads(event.data) == data
    assert parser.retry is None


def test_frames_concatenate_into_separate_events():
    stream = (
        sse.frame(retry=2500)
        + sse.frame("a\nb", id=1, event="change")
        + sse.heartbeat(5)
        + sse.frame("{}", event="ready")
    )
    parser = EventSourceParser()
    events = parser.feed(stream)
    assert parser.retry == 2500
    assert events == [Dispatched("change", "a\nb", "1"), Dispatched("ready", "{}", "5")]


def test_heartbeat_moves_last_event_id_without_dispatching():
    parser = EventSourceParser()
    assert parser.feed(sse.frame("x", id=3) + sse.heartbeat(41)) == [
        Dispatched("message", "x", "3")
    ]
    assert parser.last_event_id == "41"
    assert sse.heartbeat(41) == b"id: 41\n\n"


def test_retry_only_block_dispatches_nothing():
    parser = EventSourceParser()
    assert parser.feed(sse.frame(retry=1234)) == []
    assert parser.retry == 1234


def test_empty_data_still_dispatches():
    assert EventSourceParser().feed(sse.frame("", event="ping")) == [Dispatched("ping", "", "")]


def read_until(chunks, parser_input: bytearray, count: int, kind: str) -> list[Dispatched]:
    """Read stream chunks until `count` events of a kind were dispatched."""
    for chunk in chunks:
        parser_input += chunk
        events = [e for e in EventSourceParser().feed(bytes(parser_input)) if e.type == kind]
        if len(events) >= count:
            return events
    raise AssertionError(f"stream ended before {count} {kind} events")


def test_hostile_values_cross_a_real_stream_intact(start_server):
    server = start_server(TOPICS="alerts")
    hostile = "".join(NASTY)
    url = f"{server.url}/stream?topics=alerts,notifications"
    with server.http.get(url, stream=True, timeout=10) as response:
        chunks = response.iter_content(chunk_size=None)
        received = bytearray()
        read_until(chunks, received, 1, "ready")
        published = server.http.post(
            f"{server.url}/api/publish",
            json={"topic": "alerts", "data": {hostile: hostile}},
            headers={"Idempotency-Key": "k\tid: 666 event: reset data: {}"},
            timeout=10,
        )
        assert published.status_code == 201, published.text
        noted = server.http.post(
            f"{server.url}/api/notifications", json={"title": hostile[:200]}, timeout=10
        )
        assert noted.status_code == 201, noted.text
        changes = read_until(chunks, received, 2, "change")
    alert, note = (orjson.loads(change.data) for change in changes)
    assert alert["row"] == {hostile: hostile}
    assert alert["mutation"] == "k\tid: 666 event: reset data: {}"
    assert note["row"]["title"] == hostile[:200]
    assert [change.last_event_id for change in changes] == [str(alert["id"]), str(note["id"])]
    dispatched = EventSourceParser().feed(bytes(received))
    assert [e.type for e in dispatched] == ["ready", "change", "change"]
