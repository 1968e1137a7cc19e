"""Byte budgets, without sockets: the body reader (size, deadline, worker budget) and the
outbound byte budgets of sessions (per session, per process)."""

from __future__ import annotations

import gc
import logging
import weakref
from typing import Any

import pytest
import trio
import trio.testing

from trio_mcp_sse import SessionLimits
from trio_mcp_sse._http import BodyBudget, BodyLimits, ClientGone, Outcome, read_body
from trio_mcp_sse._session import OutboundBudget
from trio_mcp_sse.lowlevel import Session, SessionClosed, SessionState


def receiver(*messages: dict[str, Any], then_wait: bool = True) -> Any:
    queue = list(messages)

    async def receive() -> dict[str, Any]:
        if queue:
            return queue.pop(0)
        if then_wait:
            await trio.sleep_forever()
        return {"type": "http.disconnect"}

    return receive


def part(body: bytes, more: bool = True) -> dict[str, Any]:
    return {"type": "http.request", "body": body, "more_body": more}


# -- the body reader ---------------------------------------------------------------------------------
async def test_a_whole_body_is_returned_and_the_budget_given_back() -> None:
    limits = BodyLimits(100, 5.0, BodyBudget(1000))
    assert await read_body(receiver(part(b"ab"), part(b"cd", more=False)), limits) == b"abcd"
    assert await read_body(receiver(part(b"", more=False)), limits) == b""
    assert limits.budget.in_use == 0


async def test_a_stalled_body_gets_408_at_the_deadline(autojump_clock: trio.testing.MockClock) -> None:
    limits = BodyLimits(100, 3.0, BodyBudget(1000))
    start = trio.current_time()
    assert await read_body(receiver(part(b"x")), limits) is Outcome.BODY_TIMEOUT
    assert trio.current_time() - start == 3.0
    assert limits.budget.in_use == 0


async def test_bodies_beyond_the_worker_budget_get_503_while_the_others_read() -> None:
    budget = BodyBudget(10)
    limits = BodyLimits(8, 5.0, budget)
    assert budget.take(6)  # another request is half-way through its body
    assert await read_body(receiver(part(b"12345", more=False)), limits) is Outcome.BODIES_BUSY
    assert budget.in_use == 6
    budget.give_back(6)
    assert await read_body(receiver(part(b"12345", more=False)), limits) == b"12345"


async def test_an_oversized_body_and_a_vanished_client() -> None:
    limits = BodyLimits(4, 5.0, BodyBudget(100))
    assert await read_body(receiver(part(b"123"), part(b"45")), limits) is Outcome.BODY_TOO_LARGE
    with pytest.raises(ClientGone):
        await read_body(receiver(part(b"1"), then_wait=False), limits)
    assert limits.budget.in_use == 0


def test_408_closes_the_connection_and_bodies_busy_says_when_to_retry() -> None:
    assert Outcome.BODY_TIMEOUT.status == 408
    assert Outcome.BODIES_BUSY.status == 503


async def test_the_408_answer_says_connection_close() -> None:
    from trio_mcp_sse._http import send_outcome

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await send_outcome(send, Outcome.BODY_TIMEOUT)
    await send_outcome(send, Outcome.BODIES_BUSY)
    assert (b"connection", b"close") in sent[0]["headers"]
    assert (b"retry-after", b"1") in sent[2]["headers"]
    assert (b"connection", b"close") not in sent[2]["headers"]


async def test_a_draining_servers_503_closes_the_connection_so_the_retry_reconnects() -> None:
    from trio_mcp_sse._http import send_outcome

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await send_outcome(send, Outcome.SHUTTING_DOWN)
    assert sent[0]["status"] == 503
    assert {(b"retry-after", b"5"), (b"connection", b"close")} <= set(sent[0]["headers"])


# -- outbound bytes ----------------------------------------------------------------------------------
def session(name: str, budget: OutboundBudget, **limits: Any) -> Session:
    return Session(name * 32, principal=None, headers={}, limits=SessionLimits(**limits), budget=budget, peer="127.0.0.1:1")


async def test_a_backlog_past_the_session_budget_closes_the_session_and_frees_it(caplog: pytest.LogCaptureFixture) -> None:
    budget = OutboundBudget(None)
    slow = session("a", budget, outbound_bytes=1000)
    await slow.send(b"x" * 5000)  # one message into an empty queue is always accepted
    assert slow.queued_bytes == 5000
    slow.outgoing.receive_nowait()
    await slow.send(b"x" * 600)
    with pytest.raises(SessionClosed, match="slow consumer"):
        await slow.send(b"x" * 600)
    assert (slow.state, slow.close_reason) == (SessionState.CLOSING, "slow consumer")
    assert (slow.queued_bytes, budget.queued, budget.backlogged) == (0, 0, set())
    [record] = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert slow.id in record.getMessage() and "127.0.0.1:1" in record.getMessage()


async def test_the_process_budget_closes_the_session_furthest_behind_not_the_sender() -> None:
    budget = OutboundBudget(10_000)
    stuck = session("a", budget)
    healthy = session("b", budget)
    for _ in range(9):
        await stuck.send(b"x" * 1000)
    await healthy.send(b"y" * 500)
    await healthy.send(b"y" * 1000)  # over the process budget: the stuck session pays
    assert stuck.close_reason == "slow consumer"
    assert not healthy.closed
    assert (budget.queued, healthy.queued_bytes) == (1500, 1500)
    assert [healthy.outgoing.receive_nowait().data for _ in range(2)] == [b"y" * 500, b"y" * 1000]
    assert (budget.queued, budget.backlogged) == (0, set())


async def test_a_writer_that_goes_away_gives_its_backlog_back() -> None:
    budget = OutboundBudget(None)
    one = session("a", budget)
    assert one.send_nowait(b"x" * 100)
    one.outgoing.close()
    assert (one.queued_bytes, budget.queued) == (0, 0)


async def test_a_session_is_freed_without_the_garbage_collector() -> None:
    """No reference cycle through the outbox: a session's memory goes back when it ends, not at
    the next full collection (the leak test's RSS slope doubled when it did not)."""
    gc.disable()
    try:
        budget = OutboundBudget(None)
        one = session("a", budget)
        assert one.send_nowait(b"x" * 100)
        freed = weakref.ref(one)
        one.outgoing.close()
        del one
        assert freed() is None
    finally:
        gc.enable()
