"""The resumption store: event ids that name their stream, replay of one stream only, bounds."""

from __future__ import annotations

import pytest

from trio_mcp_sse._event_store import MemoryEventStore, format_event_id, parse_event_id


def test_event_ids_round_trip_and_reject_what_we_never_make() -> None:
    assert format_event_id("r7", 12) == "r7.12"
    assert parse_event_id("r7.12") == ("r7", 12)
    assert parse_event_id("get.0") == ("get", 0)
    for bad in ["", "12", ".3", "r7.", "r7.x", "r7.-1", "r 7.1", "r7.01", "r7.1e3", "a" * 65 + ".1", "r7.1" + "0" * 18]:
        assert parse_event_id(bad) is None, bad


async def test_replay_returns_only_the_named_streams_later_events() -> None:
    store = MemoryEventStore()
    a0 = await store.store("s1", "a", b"1")
    b1 = await store.store("s1", "b", b"2")
    a2 = await store.store("s1", "a", b"3")
    await store.store("s1", "b", b"4")
    a4 = await store.store("s1", "a", b"5")
    assert (a0, b1, a2, a4) == ("a.0", "b.1", "a.2", "a.4")

    replay = await store.replay("s1", a0)
    assert replay is not None
    assert replay.stream == "a"
    assert [(e.event_id, e.data) for e in replay.events] == [("a.2", b"3"), ("a.4", b"5")]
    assert replay.complete

    replay = await store.replay("s1", a4)
    assert replay is not None and replay.events == () and replay.complete


async def test_unknown_ids_replay_nothing() -> None:
    store = MemoryEventStore()
    await store.store("s1", "a", b"1")
    await store.store("s1", "b", b"2")
    assert await store.replay("s1", "junk") is None
    assert await store.replay("s1", "a.9") is None  # never issued
    assert await store.replay("s1", "a.1") is None  # seq 1 was stream b's
    assert await store.replay("other-session", "a.0") is None


async def test_bounds_drop_the_oldest_and_replay_says_so() -> None:
    store = MemoryEventStore(max_events=3, max_bytes=1000)
    ids = [await store.store("s", "a", b"x") for _ in range(5)]
    replay = await store.replay("s", ids[0])
    assert replay is not None
    assert [e.event_id for e in replay.events] == ["a.2", "a.3", "a.4"]
    assert not replay.complete  # a.1 is gone
    replay = await store.replay("s", ids[1])
    assert replay is not None and replay.complete

    store = MemoryEventStore(max_events=100, max_bytes=10)
    await store.store("s", "a", b"123456")
    await store.store("s", "a", b"123456")
    assert store.stored_bytes("s") == 6
    # One event larger than the byte bound is still kept, alone, so a resume can deliver it.
    await store.store("s", "a", b"x" * 50)
    assert store.stored_bytes("s") == 50


async def test_forgetting_streams_and_sessions() -> None:
    store = MemoryEventStore()
    await store.store("s", "a", b"11")
    await store.store("s", "b", b"2")
    await store.forget_stream("s", "a")
    assert store.stored_bytes("s") == 1
    assert len(store) == 1
    await store.forget_session("s")
    assert len(store) == 0
    assert await store.replay("s", "b.1") is None


async def test_stream_names_are_checked() -> None:
    store = MemoryEventStore()
    with pytest.raises(ValueError, match="stream name"):
        await store.store("s", "a.b", b"")
    with pytest.raises(ValueError, match="must be >= 1"):
        MemoryEventStore(max_events=0)
