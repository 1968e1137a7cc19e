"""The event store's byte budget for all its sessions together (issue 25, item 1).

Per session the memory store keeps at most ``max_events`` / ``max_bytes``; these tests are about
``max_bytes_total``: many sessions whose clients dropped their streams must not hold more than it
between them, the oldest events of the whole store go first, the streams that lost events replay as
incomplete (and are still resumable from what is left), and it is logged once.  In memory, then once
through the Streamable HTTP transport.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
import trio

from trio_mcp_sse import MCPServer, MemoryEventStore
from trio_mcp_sse._event_store import parse_event_id
from trio_mcp_sse.server import Context
from trio_mcp_sse.testing import (
    ASGIResponse,
    StreamableTestSession,
    messages_of,
    read_messages,
    run_asgi_app,
)

KIB = 1024


def budget_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if getattr(r, "event", None) == "event_store_budget"]


def check_index(store: MemoryEventStore) -> None:
    """The store's order index holds exactly its kept events, and the byte counts add up."""
    sessions = store._sessions
    kept = sum(len(events.events or ()) for events in sessions.values())
    assert len(store._order) == kept
    assert store.stored_bytes_total() == sum(store.stored_bytes(s) for s in sessions)
    for events in sessions.values():
        assert events.size == sum(len(item[2]) for item in events.events or ())
        for stream, record in events.streams.items():
            assert record.kept == sum(1 for item in events.events or () if item[0] == stream)


async def test_many_sessions_stay_within_the_total_and_the_oldest_go_first() -> None:
    store = MemoryEventStore(max_events=100, max_bytes=4 * KIB, max_bytes_total=10 * KIB)
    ids: list[tuple[str, str]] = []  # (session, event id), in the order stored
    for round_ in range(4):
        for index in range(10):
            session = f"s{index}"
            event_id = await store.store(session, "r1", bytes([65 + round_]) * 500)
            ids.append((session, event_id))
            assert store.stored_bytes_total() <= 10 * KIB
    # 40 events of 500 bytes, 20,000 bytes stored: each session is within its own 4 KiB,
    # so only the total budget dropped anything, and exactly the 20 oldest.
    assert store.stored_bytes_total() == 10_000
    assert store.evicted_bytes_total == {"total": 10_000}
    check_index(store)
    for position, (session, event_id) in enumerate(ids):
        seq = parse_event_id(event_id)
        assert seq is not None
        replay = await store.replay(session, f"r1.{seq[1] - 1}") if seq[1] else None
        if position < 10:
            continue  # the first event of each session: nothing before it to replay from
        assert replay is not None
        kept_ids = [e.event_id for e in replay.events]
        # Still kept exactly when it is among the 20 newest of the store.
        assert (event_id in kept_ids) == (position >= 20), (position, event_id, kept_ids)


async def test_an_evicted_stream_replays_incomplete_and_resumes_from_what_is_left() -> None:
    store = MemoryEventStore(max_events=100, max_bytes=4000, max_bytes_total=4000)
    priming = await store.store("victim", "r1", b"")
    progress = [await store.store("victim", "r1", b"p" * 1000) for _ in range(3)]
    # Another session's traffic pushes the victim's two oldest events out of the store.
    await store.store("other", "r1", b"o" * 3000)
    assert store.stored_bytes("victim") == 1000
    assert store.stored_bytes_total() == 4000

    replay = await store.replay("victim", priming)
    assert replay is not None
    assert replay.stream == "r1"
    assert [(e.event_id, e.data) for e in replay.events] == [(progress[2], b"p" * 1000)]
    assert not replay.complete  # progress[0] and progress[1] are gone
    # Resumed from what is left, the stream is whole again.
    replay = await store.replay("victim", progress[1])
    assert replay is not None and replay.complete
    assert [e.event_id for e in replay.events] == [progress[2]]
    # A stream all of whose events went is still known: incomplete and empty, not unknown.
    await store.store("other", "r2", b"o" * 1000)
    replay = await store.replay("victim", priming)
    assert replay is not None and replay.events == () and not replay.complete
    check_index(store)


async def test_the_per_session_bound_still_applies_below_the_total() -> None:
    store = MemoryEventStore(max_events=100, max_bytes=1000, max_bytes_total=100 * KIB)
    for _ in range(20):
        await store.store("s", "a", b"x" * 100)
    await store.store("t", "a", b"y" * 100)
    assert store.stored_bytes("s") == 1000
    assert store.stored_bytes_total() == 1100
    assert store.evicted_bytes_total == {"session": 1000}
    replay = await store.replay("s", "a.0")
    assert replay is not None and len(replay.events) == 10 and not replay.complete
    check_index(store)

    counted = MemoryEventStore(max_events=3, max_bytes=1000, max_bytes_total=1000)
    for _ in range(5):
        await counted.store("s", "a", b"z")
    assert counted.stored_bytes("s") == 3
    assert counted.evicted_bytes_total == {"session": 2}


async def test_an_event_larger_than_the_whole_budget_is_not_kept(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = MemoryEventStore(max_events=100, max_bytes=1000, max_bytes_total=2000)
    await store.store("other", "a", b"o" * 1500)
    priming = await store.store("s", "r1", b"")
    oversized = await store.store("s", "r1", b"x" * 5000)
    after = await store.store("s", "r1", b"tail")
    assert parse_event_id(oversized) == ("r1", 1)  # it still has its id: the live stream sends it
    assert store.stored_bytes_total() == 1504  # nothing else was evicted to make room for it
    assert store.stored_bytes("other") == 1500
    assert store.evicted_bytes_total == {"total": 5000}
    replay = await store.replay("s", priming)
    assert replay is not None
    assert [(e.event_id, e.data) for e in replay.events] == [(after, b"tail")]
    assert not replay.complete
    replay = await store.replay("s", oversized)
    assert replay is not None and replay.complete
    # An event over the per-session bound but within the total is kept, alone, as before.
    await store.store("s", "r1", b"y" * 1800)
    assert store.stored_bytes("s") == 1800
    assert store.stored_bytes_total() == 1800  # "other" went to make room: it is the oldest
    # A first event too large for the store still makes its stream known (incomplete, not unknown).
    first = await store.store("fresh", "r9", b"z" * 3000)
    replay = await store.replay("fresh", first)
    assert replay is not None and replay.events == () and replay.complete
    await store.store("fresh", "r9", b"w")
    replay = await store.replay("fresh", first)
    assert replay is not None and replay.complete  # nothing after it was dropped
    check_index(store)
    [line] = budget_lines(caplog)
    assert "5000 bytes" in line.getMessage()


async def test_going_over_the_budget_is_logged_once_with_byte_counts_only(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="trio_mcp_sse")
    store = MemoryEventStore(max_events=1000, max_bytes=2000, max_bytes_total=10_000)
    for index in range(200):
        await store.store(f"s{index % 50}", "r1", b"SECRET-" + b"x" * 493)
    assert store.stored_bytes_total() <= 10_000
    [line] = budget_lines(caplog)
    message = line.getMessage()
    assert "10000 bytes" in message and "SECRET" not in message
    assert line.levelno == logging.WARNING
    assert line.stored_bytes <= 10_000  # type: ignore[attr-defined]
    assert line.limit == 10_000  # type: ignore[attr-defined]

    # Once half the budget is free again it is logged again the next time, and only once.
    for index in range(50):
        await store.forget_session(f"s{index}")
    assert store.stored_bytes_total() == 0
    for index in range(200):
        await store.store(f"t{index % 50}", "r1", b"y" * 500)
    assert len(budget_lines(caplog)) == 2
    check_index(store)


async def test_forgetting_keeps_the_total_and_the_index_exact() -> None:
    store = MemoryEventStore(max_events=10, max_bytes=1000, max_bytes_total=3000)
    for index in range(30):
        await store.store(f"s{index % 3}", f"r{index % 2}", b"x" * (50 + index))
        check_index(store)
    await store.forget_stream("s0", "r0")
    check_index(store)
    await store.forget_session("s1")
    check_index(store)
    assert store.stored_bytes_total() == store.stored_bytes("s0") + store.stored_bytes("s2")
    for index in range(100):
        await store.store(f"n{index}", "r1", b"z" * 100)
        check_index(store)
    assert store.stored_bytes_total() == 3000
    assert store.stored_bytes("s0") == store.stored_bytes("s2") == 0  # the oldest went first


def test_the_total_is_validated_and_may_be_disabled() -> None:
    assert MemoryEventStore().max_bytes_total == 256 * 1024 * 1024
    with pytest.raises(ValueError, match="max_bytes_total must be >= max_bytes"):
        MemoryEventStore(max_bytes=1000, max_bytes_total=999)
    with pytest.raises(ValueError, match="max_bytes_total must be >= max_bytes"):
        MemoryEventStore(max_bytes_total=1024)  # below the default 8 MiB per session
    assert MemoryEventStore(max_bytes=1000, max_bytes_total=1000).max_bytes_total == 1000


async def test_no_total_budget_keeps_the_per_session_bounds_only() -> None:
    store = MemoryEventStore(max_events=100, max_bytes=1000, max_bytes_total=None)
    for index in range(100):
        await store.store(f"s{index}", "r1", b"x" * 500)
    assert store.stored_bytes_total() == 50_000
    assert store.evicted_bytes_total == {}


# -- through the transport ---------------------------------------------------------------------------
ANSWER_BYTES = 40 * KIB


def big_answer_server() -> tuple[MCPServer, dict[str, trio.Event], list[str]]:
    server = MCPServer("budget-test", "1.0.0")
    gates: dict[str, trio.Event] = {}
    finished: list[str] = []

    @server.tool
    async def big(ctx: Context, name: str) -> str:
        """Report progress, wait for gate ``name``, answer with ~40 KB."""
        gate = gates.setdefault(name, trio.Event())
        await ctx.report_progress(1)
        await gate.wait()
        finished.append(name)
        return name + ":" + "x" * ANSWER_BYTES

    return server, gates, finished


def call(request_id: int, name: str) -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "id": request_id,
        "method": "tools/call",
        "params": {"name": "big", "arguments": {"name": name}, "_meta": {"progressToken": name}},
    }


async def test_dropped_streams_of_many_sessions_do_not_grow_the_store_past_its_budget(
    autojump_clock: trio.abc.Clock, caplog: pytest.LogCaptureFixture
) -> None:
    """The issue's scenario, scaled down: 30 sessions, each with two ~40 KB answers whose stream
    the client dropped after the first event; unbounded, the store would hold 2.4 MB."""
    budget = 256 * KIB
    store = MemoryEventStore(max_bytes=128 * KIB, max_bytes_total=budget)
    server, gates, finished = big_answer_server()
    app = server.http_app(sse_path=None, event_store=store, metrics_path="/metrics")
    sessions = 30
    async with run_asgi_app(app) as http:
        clients: list[StreamableTestSession] = []
        resume_from: list[str] = []
        for index in range(sessions):
            client = StreamableTestSession(http)
            await client.initialize()
            clients.append(client)
            for request in (1, 2):
                name = f"s{index}-{request}"
                async with client.open_post(call(100 + request, name)) as stream:
                    assert stream.status == 200
                    await stream.next_event()  # priming
                    [progress] = await read_messages(stream, 1)
                    assert progress["method"] == "notifications/progress"
                    if request == 1:
                        assert stream.decoder.last_event_id is not None
                        resume_from.append(stream.decoder.last_event_id)
                # The client dropped the stream after its first event; the tool goes on.
                gates.setdefault(name, trio.Event()).set()
                with trio.fail_after(10):
                    while name not in finished:
                        await trio.sleep(0.01)
                await trio.sleep(0.1)  # let the answer be routed and stored
                assert store.stored_bytes_total() <= budget
        assert len(finished) == 2 * sessions
        total = store.stored_bytes_total()
        assert budget - 2 * ANSWER_BYTES < total <= budget  # full, never over
        assert store.evicted_bytes_total["total"] >= 2 * sessions * ANSWER_BYTES - budget
        assert "session" not in store.evicted_bytes_total  # each session is within its own bound
        assert len(budget_lines(caplog)) == 1

        # The newest session's answer is still there; the oldest's was dropped: its resume says so.
        async with clients[-1].open_get(last_event_id=resume_from[-1]) as resumed:
            assert resumed.status == 200
            await resumed.read_until_end()
        [answer] = messages_of(ASGIResponse(200, resumed.headers, bytes(resumed.raw)))
        assert answer["id"] == 101
        assert answer["result"]["content"][0]["text"].startswith(f"s{sessions - 1}-1:")
        caplog.clear()
        async with clients[0].open_get(last_event_id=resume_from[0]) as resumed:
            assert resumed.status == 200
            await resumed.read_until_end()
        assert bytes(resumed.raw) == b""  # what was left of it: nothing
        assert [r for r in caplog.records if getattr(r, "event", None) == "resume_incomplete"]

        metrics = (await http.request("GET", "/metrics")).body.decode()
        gauges = dict(
            line.rsplit(" ", 1)
            for line in metrics.splitlines()
            if line.startswith("mcp_event_store")
        )
        assert int(gauges["mcp_event_store_bytes"]) == store.stored_bytes_total() <= budget
        assert (
            int(gauges['mcp_event_store_evicted_bytes_total{bound="total"}'])
            == store.evicted_bytes_total["total"]
        )
        assert gauges['mcp_event_store_evicted_bytes_total{bound="session"}'] == "0"

        for client in clients:
            assert (await client.delete()).status == 200
        with trio.fail_after(10):
            while len(store):
                await trio.sleep(0.01)
        assert store.stored_bytes_total() == 0
