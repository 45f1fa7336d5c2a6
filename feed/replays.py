"""Replay pages read from the ring once and shared by every stream that asks for the same one.

After a reconnect storm thousands of streams of one shared subscription replay from the same
cursor, and each page they read is the same run of the ring's events seen through the same
views: its frames are rendered once and handed to each. A page is the same only for the same
subscription object (the hub shares one per distinct set of views, so per policy group: never
another principal's shape), the same cursor and page size, the same run of the ring (its
generation: a restarted ring holds other events), and — for a page that stopped at the ring's
head — the same head.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple

from .filters import Subscription

if TYPE_CHECKING:
    from .ring import Ring


class Page(NamedTuple):
    """One replay page: its frames joined into the writes that carry them (shared by every
    stream that replays it, never changed), how many frames and bytes, and where it ends."""

    writes: tuple[bytes, ...]
    frames: int
    size: int
    position: int
    at_head: bool


# Pages kept, and the bytes of their frames, the least recently asked for going first: a
# storm needs a few pages per cursor; a page of large rows may not be kept at all.
PAGES = 32
PAGE_BYTES = 4 << 20


class Replays:
    """A small memo of rendered replay pages of one ring."""

    def __init__(self, pages: int = PAGES, max_bytes: int = PAGE_BYTES) -> None:
        self.pages = pages
        self.max_bytes = max_bytes
        self.bytes = 0
        # (id of the subscription, cursor, page size)
        #   -> (subscription, generation, head, page)
        self.held: OrderedDict[tuple[int, int, int], tuple] = OrderedDict()

    def clear(self) -> None:
        """Forget every page (the ring started again)."""
        self.held.clear()
        self.bytes = 0

    def page(
        self,
        ring: Ring,
        subscription: Subscription,
        after: int,
        size: int,
        render: Callable[[], Page],
    ) -> Page:
        """Return the page of `size` events after a cursor the ring holds: the one rendered
        for the same subscription from the same run of the ring (at the same head, when it
        reached it), else `render()`'s."""
        generation, head = ring.generation, ring.head
        key = (id(subscription), after, size)
        held = self.held.get(key)
        if held is not None:
            owner, made_in, made_at, page = held
            if (
                owner is subscription
                and made_in == generation
                and (not page.at_head or made_at == head)
            ):
                self.held.move_to_end(key)
                # A page read from the ring all the same, as the ring's readers count them.
                ring.hits += 1
                return page
        page = render()
        self._forget(key)
        if page.size <= self.max_bytes:
            # Holding the subscription keeps its id from being reused by another while held.
            self.held[key] = (subscription, generation, head, page)
            self.bytes += page.size
            while len(self.held) > self.pages or self.bytes > self.max_bytes:
                self._forget(next(iter(self.held)))
        return page

    def _forget(self, key: tuple[int, int, int]) -> None:
        held = self.held.pop(key, None)
        if held is not None:
            self.bytes -= held[3].size
