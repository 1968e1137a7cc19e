"""The stream pump on its own: a session's outbound items become SSE frames on an ASGI ``send``."""

from __future__ import annotations

import math
from typing import Any

import pytest
import trio
import trio.testing

from trio_mcp_sse import SessionLimits
from trio_mcp_sse._keepalive import KeepaliveClock
from trio_mcp_sse._pump import pump_events
from trio_mcp_sse.lowlevel import Session


class Wire:
    """The ASGI side of one response: what the app sent, and a disconnect button."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self._events_send, self._events = trio.open_memory_channel[dict[str, Any]](math.inf)

    async def receive(self) -> dict[str, Any]:
        return await self._events.receive()

    async def send(self, message: Any) -> None:
        self.sent.append(dict(message))

    def disconnect(self) -> None:
        self._events_send.send_nowait({"type": "http.disconnect"})

    @property
    def body(self) -> bytes:
        return b"".join(m.get("body", b"") for m in self.sent if m["type"] == "http.response.body")


def new_session() -> Session:
    return Session("a" * 32, principal=None, headers={}, limits=SessionLimits())


async def test_items_become_message_events_whatever_request_they_belong_to() -> None:
    session, wire = new_session(), Wire()
    await session.send(b'{"id":1}', related_request_id=1)
    await session.send(b'{"method":"x"}')
    session._finish()  # the session ended: the pump writes what is queued, then ends the body
    peer_gone = await pump_events(session, wire.receive, wire.send, clock=None, first_event=b"event: endpoint\ndata: /e\n\n")
    assert not peer_gone
    assert wire.sent[0] == {
        "type": "http.response.start",
        "status": 200,
        "headers": (
            (b"content-type", b"text/event-stream"),
            (b"cache-control", b"no-cache, no-transform"),
            (b"x-accel-buffering", b"no"),
        ),
    }
    assert wire.body == (
        b"event: endpoint\ndata: /e\n\n"
        b'event: message\ndata: {"id":1}\n\nevent: message\ndata: {"method":"x"}\n\n'
    )
    assert wire.sent[-1] == {"type": "http.response.body", "body": b"", "more_body": False}


async def test_a_disconnect_ends_the_pump_and_reports_it() -> None:
    session, wire = new_session(), Wire()
    async with trio.open_nursery() as nursery:
        results: list[bool] = []

        async def pump() -> None:
            results.append(await pump_events(session, wire.receive, wire.send, clock=None))

        nursery.start_soon(pump)
        await trio.testing.wait_all_tasks_blocked()
        assert session.send_nowait(b"{}")  # wakes the parked pump
        await trio.testing.wait_all_tasks_blocked()
        assert wire.body == b"event: message\ndata: {}\n\n"
        wire.disconnect()
    assert results == [True]
    assert session.on_outgoing is None
    assert all(m.get("more_body", True) for m in wire.sent if m["type"] == "http.response.body")


class CountingWire(Wire):
    """A wire whose ``receive`` counts the waits for the client (under serve: socket reads)."""

    def __init__(self) -> None:
        super().__init__()
        self.waits = 0

    async def receive(self) -> dict[str, Any]:
        self.waits += 1
        return await super().receive()


@pytest.mark.parametrize(("reads_on_demand", "waits_expected"), [(False, 21), (True, 3)])
async def test_when_the_server_reads_on_demand_a_busy_stream_waits_for_its_client_once_a_second(
    reads_on_demand: bool, waits_expected: int, autojump_clock: trio.testing.MockClock
) -> None:
    """Messages 0.15 s apart (so that none falls on the end of a one-second window): one wait for
    the client per second instead of one per message, and a client that leaves is still seen
    within about a second."""
    session, wire = new_session(), CountingWire()
    results: list[bool] = []
    async with trio.open_nursery() as nursery:

        async def pump() -> None:
            results.append(await pump_events(session, wire.receive, wire.send, clock=None, reads_on_demand=reads_on_demand))

        nursery.start_soon(pump)
        await trio.testing.wait_all_tasks_blocked()
        for _ in range(20):  # three seconds of a busy stream: waits at 0, 1.05 and 2.1 s
            assert session.send_nowait(b"{}")
            await trio.sleep(0.15)
        assert wire.body == b"event: message\ndata: {}\n\n" * 20
        assert wire.waits == waits_expected
        left = trio.current_time()
        wire.disconnect()
    assert results == [True]
    assert trio.current_time() - left <= 1.0


async def test_keepalive_comments_come_from_the_shared_clock(autojump_clock: trio.testing.MockClock) -> None:
    session, wire = new_session(), Wire()
    clock = KeepaliveClock(5)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(clock.run)
        nursery.start_soon(lambda: pump_events(session, wire.receive, wire.send, clock=clock))
        await trio.sleep(12)
        assert wire.body == b": ping\n\n: ping\n\n"
        wire.disconnect()
        await trio.testing.wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()
