"""A stream's writes: every frame once and in order, each write bounded in size."""

from hypothesis import given
from hypothesis import strategies as st

from feed.delivery import CHUNK_BYTES, chunks

frames = st.lists(
    st.integers(min_value=1, max_value=3 * CHUNK_BYTES).map(lambda n: b"x" * (n - 1) + b"\n"),
    max_size=40,
)


@given(frames)
def test_writes_carry_every_frame_once_in_order_within_the_bound(frames):
    expected = b"".join(frames)
    given_frames = list(frames)
    writes = list(chunks(given_frames))
    assert b"".join(writes) == expected
    # A write exceeds the bound only when it is one frame larger than the bound.
    assert all(len(w) <= CHUNK_BYTES or w in frames for w in writes)
    # Written frames are let go: the stream holds nothing of them while the socket drains.
    assert given_frames == []


def test_small_frames_share_one_write():
    assert list(chunks([b"a\n", b"b\n", b"c\n"])) == [b"a\nb\nc\n"]
