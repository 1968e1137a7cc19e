"""The session core on its own: state machine, deliveries, limits and the registry seam (mock clock)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import pytest
import trio
import trio.testing

from trio_mcp_sse import SessionLimits
from trio_mcp_sse._session import Refusal
from trio_mcp_sse.lowlevel import (
    Delivery,
    Incoming,
    InvalidMessage,
    LocalSessionRegistry,
    Session,
    SessionClosed,
    SessionManager,
    SessionRefused,
    SessionState,
    parse_message,
)

PING = b'{"jsonrpc":"2.0","id":1,"method":"ping"}'


def incoming(body: bytes = PING) -> Incoming:
    return Incoming(parse_message(body))


def invalid() -> InvalidMessage:
    return InvalidMessage(-32600, "Invalid Request", 9)


def new_session(**limits: float) -> Session:
    return Session("a" * 32, principal="alice", headers={}, limits=SessionLimits(**limits))  # type: ignore[arg-type]


async def park(session: Session) -> None:
    """A handler that reads nothing until the session ends."""
    await session.finished.wait()


async def read_all(session: Session) -> None:
    async for _ in session.incoming:
        pass


@pytest.fixture
async def manager() -> AsyncIterator[SessionManager]:
    sessions = SessionManager(park, limits=SessionLimits(max_sessions=2))
    async with sessions.run():
        yield sessions


# -- the state machine --------------------------------------------------------------------------
async def test_states_move_only_forward_and_the_first_close_reason_wins() -> None:
    session = new_session()
    assert (session.state, session.close_reason, session.closed) == (SessionState.OPEN, None, False)
    session.drain()
    assert session.state is SessionState.DRAINING and session.draining and not session.closed
    session.drain()
    assert session.state is SessionState.DRAINING
    session.close("client disconnected")
    assert (session.state, session.close_reason, session.closed) == (SessionState.CLOSING, "client disconnected", True)
    assert session.cancel_scope.cancel_called
    session.close("slow consumer")
    session.drain()
    assert (session.state, session.close_reason) == (SessionState.CLOSING, "client disconnected")
    session._finish()
    assert session.state is SessionState.CLOSED and session.finished.is_set()
    session.close("again")
    session.drain()
    assert (session.state, session.close_reason) == (SessionState.CLOSED, "client disconnected")


async def test_a_session_that_ends_by_itself_has_no_close_reason() -> None:
    session = new_session()
    session._finish()
    assert (session.state, session.close_reason, session.closed) == (SessionState.CLOSED, None, True)
    with pytest.raises(trio.EndOfChannel):
        session.outgoing.receive_nowait()


# -- deliveries in each state ----------------------------------------------------------------------
async def test_delivery_outcomes_follow_the_state() -> None:
    session = new_session()
    assert await session.deliver(incoming()) is Delivery.ACCEPTED
    assert session.incoming.receive_nowait().message.id == 1  # type: ignore[union-attr]
    session.drain()
    assert await session.deliver(incoming()) is Delivery.DRAINING
    session.close("x")
    assert await session.deliver(incoming()) is Delivery.GONE
    session._finish()
    assert await session.deliver(incoming()) is Delivery.GONE


async def test_an_invalid_message_is_reported_on_the_stream_unless_the_session_is_gone() -> None:
    session = new_session()
    assert await session.deliver(invalid()) is Delivery.REJECTED
    error = session.outgoing.receive_nowait()
    assert error.related_request_id == 9
    assert b'"code":-32600' in error.data
    session.drain()  # still has a stream: it still hears why
    assert await session.deliver(invalid()) is Delivery.REJECTED
    session.close("x")
    assert await session.deliver(invalid()) is Delivery.GONE


async def test_a_full_inbound_channel_is_busy_after_the_delivery_bound(autojump_clock: trio.testing.MockClock) -> None:
    session = new_session(inbound_buffer=1, deliver_timeout=3)
    assert await session.deliver(incoming()) is Delivery.ACCEPTED
    start = trio.current_time()
    assert await session.deliver(incoming()) is Delivery.BUSY
    assert trio.current_time() - start == 3


async def test_a_waiting_delivery_learns_the_session_drained(autojump_clock: trio.testing.MockClock) -> None:
    session = new_session(inbound_buffer=1, deliver_timeout=10)
    assert await session.deliver(incoming()) is Delivery.ACCEPTED
    async with trio.open_nursery() as nursery:
        results = []

        async def deliver() -> None:
            results.append(await session.deliver(incoming()))

        nursery.start_soon(deliver)
        await trio.sleep(1)
        session.drain()
    assert results == [Delivery.DRAINING]


# -- outbound items --------------------------------------------------------------------------------
async def test_outgoing_items_carry_the_related_request_id() -> None:
    session = new_session()
    await session.send(b"{}", related_request_id=7)
    assert session.send_nowait(b"[]", related_request_id="r")
    await session.send(b"null")
    items = [session.outgoing.receive_nowait() for _ in range(3)]
    assert [(item.data, item.related_request_id) for item in items] == [(b"{}", 7), (b"[]", "r"), (b"null", None)]
    assert session.wake_writer()
    wake = session.outgoing.receive_nowait()
    assert (wake.data, wake.related_request_id) == (b"", None)


async def test_a_peer_that_stops_reading_is_closed_as_slow(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    session = new_session(outbound_buffer=1, send_timeout=5)
    await session.send(b"1")
    assert not session.send_nowait(b"2")
    start = trio.current_time()
    with pytest.raises(SessionClosed, match="slow consumer"):
        await session.send(b"2")
    assert trio.current_time() - start == 5
    assert (session.state, session.close_reason) == (SessionState.CLOSING, "slow consumer")
    assert any(session.id in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)


async def test_send_after_the_end_raises_session_closed() -> None:
    session = new_session()
    session.close("client disconnected")
    session._finish()
    with pytest.raises(SessionClosed, match="client disconnected"):
        await session.send(b"{}")
    assert not session.send_nowait(b"{}")
    assert not session.wake_writer()


# -- the registry seam -----------------------------------------------------------------------------
async def test_unknown_and_foreign_sessions_are_the_same_gone() -> None:
    registry = LocalSessionRegistry()
    session = new_session()
    registry.open(session)
    assert registry.count() == 1
    with pytest.raises(ValueError, match="duplicate"):
        registry.open(session)
    assert await registry.deliver(session.id, "mallory", incoming()) is Delivery.GONE
    assert await registry.deliver(session.id, None, invalid()) is Delivery.GONE
    assert await registry.deliver("b" * 32, "alice", incoming()) is Delivery.GONE
    assert session.outgoing.statistics().current_buffer_used == 0  # nothing reached the session
    assert await registry.deliver(session.id, "alice", incoming()) is Delivery.ACCEPTED
    registry.close(session)
    assert registry.count() == 0
    assert await registry.deliver(session.id, "alice", incoming()) is Delivery.GONE


# -- the manager -----------------------------------------------------------------------------------
async def test_open_deliver_close(manager: SessionManager) -> None:
    session = await manager.open_session(principal="alice", headers={"user-agent": "t"})
    assert (len(manager), manager.registry.count(), manager.get(session.id)) == (1, 1, session)
    assert session.headers == {"user-agent": "t"}
    assert await manager.deliver(session.id, "alice", incoming()) is Delivery.ACCEPTED
    assert await manager.deliver(session.id, "bob", incoming()) is Delivery.GONE
    await manager.close_session(session, "client disconnected")
    assert session.state is SessionState.CLOSED
    assert (len(manager), manager.registry.count(), manager.get(session.id)) == (0, 0, None)
    assert manager.metrics.sessions_closed == {"client disconnected": 1}
    assert await manager.deliver(session.id, "alice", incoming()) is Delivery.GONE


async def test_capacity_and_draining_refuse_new_sessions(manager: SessionManager) -> None:
    first = await manager.open_session()
    await manager.open_session()
    with pytest.raises(SessionRefused) as refused:
        await manager.open_session()
    assert refused.value.reason is Refusal.AT_CAPACITY
    await manager.close_session(first, "x")
    third = await manager.open_session()
    await manager.close_all()
    assert third.state is SessionState.CLOSED and len(manager) == 0
    with pytest.raises(SessionRefused) as refused:
        await manager.open_session()
    assert refused.value.reason is Refusal.DRAINING


async def test_a_manager_that_is_not_running_hosts_nothing() -> None:
    with pytest.raises(RuntimeError, match="not running"):
        await SessionManager(park).open_session()


async def test_idle_sessions_close_after_the_idle_timeout(autojump_clock: trio.testing.MockClock) -> None:
    sessions = SessionManager(read_all, limits=SessionLimits(idle_timeout=60))
    async with sessions.run():
        session = await sessions.open_session()
        start = trio.current_time()
        await trio.sleep(50)
        assert await session.deliver(incoming()) is Delivery.ACCEPTED  # traffic moves the deadline
        await session.finished.wait()
        assert trio.current_time() - start == 110
        assert session.close_reason == "idle timeout"
        assert sessions.metrics.sessions_closed == {"idle timeout": 1}


async def test_handler_endings_and_their_reasons(caplog: pytest.LogCaptureFixture) -> None:
    async def returns(session: Session) -> None:
        return

    async def fails(session: Session) -> None:
        raise RuntimeError("boom")

    for handler, reason, close_reason in ((returns, "handler returned", None), (fails, "handler failed", "handler failed")):
        sessions = SessionManager(handler)
        async with sessions.run():
            session = await sessions.open_session()
            await session.finished.wait()
        assert (session.state, session.close_reason) == (SessionState.CLOSED, close_reason)
        assert sessions.metrics.sessions_closed == {reason: 1}
    [failure] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert "handler failed" in failure.getMessage()


async def test_drain_lets_accepted_work_finish(autojump_clock: trio.testing.MockClock) -> None:
    async def slow_reader(session: Session) -> None:
        async for item in session.incoming:
            await trio.sleep(4)
            await session.send(b"done", related_request_id=item.message.id)  # type: ignore[union-attr]

    sessions = SessionManager(slow_reader)
    async with sessions.run():
        session = await sessions.open_session()
        assert await sessions.deliver(session.id, None, incoming()) is Delivery.ACCEPTED
        start = trio.current_time()
        await sessions.drain(30)
        assert trio.current_time() - start == 4
        assert session.state is SessionState.CLOSED
        assert [item.data for item in [session.outgoing.receive_nowait()]] == [b"done"]
        assert sessions.metrics.sessions_closed == {"drained": 1}


async def test_drain_cancels_what_outlasts_the_grace_period(autojump_clock: trio.testing.MockClock) -> None:
    sessions = SessionManager(park)
    async with sessions.run():
        session = await sessions.open_session()
        start = trio.current_time()
        await sessions.drain(10)
        assert trio.current_time() - start == 10
        assert (session.state, session.close_reason) == (SessionState.CLOSED, "server shutting down")
