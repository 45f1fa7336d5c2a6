"""Live streams parked on the worker's loop, and on a greenlet of their own (PARK_STREAMS=0):
both replay, go live, beat and end the same, also when their openings take turns; parked
ones hold none of the server's slots, and a worker full of streams answers 503."""

import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from .delivery_tools import create_bread_types, head, next_change, sell, wait_for
from .servers import http
from .sse import SseStream


@pytest.mark.parametrize("parked", ["1", "0"])
def test_a_stream_replays_goes_live_beats_and_is_let_go_either_way(start_server, parked):
    server = start_server(workers=1, HEARTBEAT_SECONDS="0.5", PARK_STREAMS=parked)
    bread = create_bread_types(server.url, 1)[0]
    start = head(server.url)
    logged = [sell(server.url, bread, "morning") for _ in range(3)]
    with SseStream(server.url, "topics=sales_logs", last_event_id=str(start)) as stream:
        blocks = stream.until("ready")
        assert [int(b.id) for b in blocks if b.event == "change"] == logged
        live = sell(server.url, bread, "evening")
        assert next_change(stream, 5)["id"] == live
        # Nothing new: the next block is a heartbeat, an id-only block at the cursor (past
        # the sale's other events, on topics not followed here).
        beat = stream.next()
        assert (beat.event, beat.data) == (None, None)
        assert int(beat.id) >= live
        # A stopping server lets it go: a last block with the cursor and a retry, then
        # the response ends cleanly (a cut connection would raise here instead).
        server.terminate()
        rest = list(stream.blocks)
    # Heartbeats, then the farewell: id-only blocks at the cursor, the last with a retry.
    assert {(b.event, b.data, int(b.id)) for b in rest} == {(None, None, int(beat.id))}
    assert rest[-1].retry is not None


def test_parked_streams_hold_no_server_slot_and_a_full_worker_answers_503(start_server):
    server = start_server(workers=1, WORKER_CONNECTIONS="3", PARK_STREAMS="1")
    streams = [SseStream(server.url, "topics=bread_types") for _ in range(3)]
    try:
        for stream in streams:
            stream.until("ready")
        # gunicorn takes 3 connections at once: these are answered because none holds one.
        assert http(server.url).get(f"{server.url}/healthz", timeout=5).status_code == 200
        refused = http(server.url).get(f"{server.url}/stream?topics=bread_types", timeout=5)
        assert refused.status_code == 503
        assert refused.headers["Retry-After"] == "1"
        assert refused.json()["error"] == "at_capacity"
        assert refused.json()["details"] == {"streams": 3, "limit": 3}
    finally:
        for stream in streams:
            stream.close()
    # A parked stream notices at once that its client hung up, and its place frees.
    url = f"{server.url}/stream?topics=bread_types"
    wait_for(lambda: _let_in(url, refused=503), 5, "closed streams to free their places")


def test_a_closed_parked_stream_gives_its_principals_slot_back(start_server):
    # A channel of its own: the principal's slots of other tests' servers on the shared
    # Redis (their leases not lapsed yet) are not counted here.
    server = start_server(
        workers=1, MAX_STREAMS="1", PARK_STREAMS="1", FEED_CHANNEL=f"tidings:{uuid.uuid4().hex}"
    )
    url = f"{server.url}/stream?topics=bread_types"
    for _ in range(5):
        # The principal's one slot is free again soon after each close: the hang-up is
        # seen at once and the slot given back (it would stay taken for its 60-s lease).
        wait_for(lambda: _let_in(url, refused=429), 5, "the closed stream's slot back")


def _let_in(url: str, refused: int) -> bool:
    """Open a stream and close it again; tell whether it was let in (False when answered
    `refused`, an AssertionError for any other answer)."""
    answer = http(url).get(url, stream=True)
    answer.close()
    assert answer.status_code in (200, refused), answer.text
    return answer.status_code == 200


@pytest.mark.parametrize("parked", ["1", "0"])
def test_streams_opening_together_one_at_a_time_all_replay_exactly_and_go_live(
    start_server, parked
):
    server = start_server(workers=1, STREAM_OPENINGS="1", PARK_STREAMS=parked)
    bread = create_bread_types(server.url, 1)[0]
    start = head(server.url)
    logged = [sell(server.url, bread, "morning") for _ in range(5)]

    def open_one(_) -> tuple[SseStream, list[int]]:
        stream = SseStream(server.url, "topics=sales_logs", last_event_id=str(start))
        return stream, [int(b.id) for b in stream.until("ready") if b.event == "change"]

    with ThreadPoolExecutor(max_workers=12) as pool:
        opened = list(pool.map(open_one, range(12)))
    try:
        assert [replayed for _, replayed in opened] == [logged] * 12
        live = sell(server.url, bread, "evening")
        assert [next_change(stream, 5)["id"] for stream, _ in opened] == [live] * 12
    finally:
        for stream, _ in opened:
            stream.close()
