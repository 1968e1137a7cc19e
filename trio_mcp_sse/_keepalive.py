"""One timer task for the keepalives of many streams.

A stream needs a keepalive after ``interval`` seconds of silence.  Timing each
stream's wait with its own cancel scope costs a scope per written message and
about a kilobyte per idle stream (the scope and its cancel status stay parked
with the task); with ten thousand idle streams that is ten megabytes of timers.
Instead every stream records when it last wrote, and one task keeps a heap of
deadlines: at a stream's deadline it either finds that the stream wrote since
(and moves the deadline to ``last_write + interval``) or wakes the stream's
writer to send a keepalive.  Each stream has at most one heap entry, so the
heap is as large as the number of streams, and a written message costs one
float store.
"""

from __future__ import annotations

import heapq
import itertools
import logging
from collections.abc import Callable

import trio

__all__ = ["KeepaliveClock", "Watched"]

log = logging.getLogger("trio_mcp_sse")


class Watched:
    """A stream as the clock sees it: when it last wrote, and how to wake its writer."""

    __slots__ = ("last_write", "wake")

    def __init__(self, wake: Callable[[], bool], now: float) -> None:
        self.wake: Callable[[], bool] | None = wake
        """Ask the writer for a keepalive; returns False if it is busy (which is traffic
        enough).  ``None`` once the stream ended."""
        self.last_write = now


class KeepaliveClock:
    """Wakes each watched stream's writer after ``interval`` seconds without a write."""

    def __init__(self, interval: float) -> None:
        if interval <= 0:
            raise ValueError("interval must be > 0")
        self.interval = interval
        self._heap: list[tuple[float, int, Watched]] = []
        self._order = itertools.count()
        self._changed = trio.Event()
        self._ended = 0

    def watch(self, wake: Callable[[], bool]) -> Watched:
        """Start watching a stream that just wrote; call ``unwatch`` when it ends."""
        now = trio.current_time()
        watched = Watched(wake, now)
        # Deadlines of new streams are never earlier than those already queued, so
        # the timer only needs waking when it had nothing to wait for.
        if not self._heap:
            self._changed.set()
        heapq.heappush(self._heap, (now + self.interval, next(self._order), watched))
        return watched

    def unwatch(self, watched: Watched) -> None:
        """Stop watching.  The entry leaves the heap lazily, but lets go of the stream now."""
        watched.wake = None
        self._ended += 1
        if self._ended > 64 and self._ended * 2 > len(self._heap):
            # Under churn, ended entries would pile up for a whole interval: compact.
            self._heap = [entry for entry in self._heap if entry[2].wake is not None]
            heapq.heapify(self._heap)
            self._ended = 0

    async def run(self) -> None:
        """The timer task; runs until cancelled.

        Its own error boundary: it shares a nursery with every session, and a bug
        here must cost keepalives, not sessions.
        """
        try:
            await self._tick_forever()
        except Exception:
            log.exception("keepalive clock failed; streams get no more keepalives", extra={"event": "keepalive_failed"})

    async def _tick_forever(self) -> None:
        while True:
            if not self._heap:
                await self._changed.wait()
                self._changed = trio.Event()
                continue
            await trio.sleep_until(self._heap[0][0])
            heap = self._heap  # (unwatch may have replaced it while we slept)
            now = trio.current_time()
            while heap and heap[0][0] <= now:
                _, _, watched = heapq.heappop(heap)
                if watched.wake is None:
                    self._ended = max(0, self._ended - 1)
                    continue
                due = watched.last_write + self.interval
                if due <= now:
                    watched.wake()
                    watched.last_write = now
                    due = now + self.interval
                heapq.heappush(heap, (due, next(self._order), watched))
