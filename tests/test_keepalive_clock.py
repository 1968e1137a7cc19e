"""The shared keepalive clock (mock clock, no transport)."""

from __future__ import annotations

import gc
import weakref

import pytest
import trio
import trio.testing

from trio_mcp_sse._keepalive import KeepaliveClock


class Writer:
    def __init__(self) -> None:
        self.pings: list[float] = []
        self.busy = False

    def wake(self) -> bool:
        if self.busy:
            return False
        self.pings.append(trio.current_time())
        return True


async def test_each_stream_is_woken_after_its_own_silence(autojump_clock: trio.testing.MockClock) -> None:
    clock = KeepaliveClock(10)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(clock.run)
        first, second = Writer(), Writer()
        clock.watch(first.wake)
        await trio.sleep(3)
        watched = clock.watch(second.wake)
        await trio.sleep(8)
        watched.last_write = trio.current_time()  # the second stream wrote at t=11
        await trio.sleep(31)
        nursery.cancel_scope.cancel()
    assert first.pings == [10, 20, 30, 40]
    assert second.pings == [21, 31, 41]


async def test_a_busy_writer_still_counts_as_alive(autojump_clock: trio.testing.MockClock) -> None:
    clock = KeepaliveClock(5)
    writer = Writer()
    writer.busy = True
    async with trio.open_nursery() as nursery:
        nursery.start_soon(clock.run)
        clock.watch(writer.wake)
        await trio.sleep(12)
        writer.busy = False
        await trio.sleep(5)
        nursery.cancel_scope.cancel()
    assert writer.pings == [15]


async def test_unwatched_streams_are_released_and_compacted(autojump_clock: trio.testing.MockClock) -> None:
    clock = KeepaliveClock(15)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(clock.run)
        writers = [Writer() for _ in range(1000)]
        refs = [weakref.ref(w) for w in writers]
        entries = [clock.watch(w.wake) for w in writers]
        await trio.sleep(1)
        for entry in entries:
            clock.unwatch(entry)
        del writers, entries
        gc.collect()
        assert all(ref() is None for ref in refs)  # nothing keeps an ended stream alive
        assert len(clock._heap) <= 64  # and its heap entry does not wait a whole interval
        survivor = Writer()
        clock.watch(survivor.wake)
        await trio.sleep(16)
        nursery.cancel_scope.cancel()
    assert survivor.pings == [16]


def test_interval_must_be_positive() -> None:
    with pytest.raises(ValueError, match="interval"):
        KeepaliveClock(0)


async def test_a_failing_writer_hook_costs_keepalives_not_the_caller(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    def broken() -> bool:
        raise RuntimeError("bug")

    clock = KeepaliveClock(1)
    clock.watch(broken)
    with trio.fail_after(10):
        await clock.run()  # returns (logged) instead of raising into its nursery
    assert "keepalive clock failed" in caplog.text
