"""The sessions' lean channel behaves like a trio memory channel (without ``clone``), and holds nothing idle."""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from trio_mcp_sse._channel import ChannelReceiver, ChannelSender, open_channel


def _outcome(call: Any) -> tuple[str, Any]:
    try:
        return "value", call()
    except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError, trio.BrokenResourceError) as error:
        return "raised", type(error)


_OPS = st.lists(
    st.one_of(
        st.tuples(st.just("send"), st.integers(0, 99)),
        st.tuples(st.sampled_from(["receive", "close_send", "close_receive", "stats"]), st.none()),
    ),
    max_size=40,
)


@settings(max_examples=300, deadline=None)
@given(capacity=st.integers(0, 4), ops=_OPS)
def test_every_operation_without_waiting_answers_as_a_memory_channel_does(capacity: int, ops: list[tuple[str, Any]]) -> None:
    ours = open_channel(capacity)
    theirs = trio.open_memory_channel[int](capacity)
    for name, argument in ops:
        answers = []
        for send, receive in (ours, theirs):
            if name == "send":
                answers.append(_outcome(lambda: send.send_nowait(argument)))  # noqa: B023
            elif name == "receive":
                answers.append(_outcome(receive.receive_nowait))
            elif name == "close_send":
                answers.append(_outcome(send.close))
            elif name == "close_receive":
                answers.append(_outcome(receive.close))
            else:
                stats = receive.statistics()
                answers.append(("value", (stats.current_buffer_used, stats.open_send_channels, stats.open_receive_channels)))
        assert answers[0] == answers[1], (name, argument)


async def test_an_item_goes_straight_to_a_waiting_receiver_first_come_first_served() -> None:
    send, receive = open_channel(0)
    got: list[tuple[str, int]] = []

    async def reader(name: str) -> None:
        got.append((name, await receive.receive()))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(reader, "a")
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(reader, "b")
        await trio.testing.wait_all_tasks_blocked()
        send.send_nowait(1)  # a rendezvous: only a waiting receiver makes room
        send.send_nowait(2)
        with pytest.raises(trio.WouldBlock):
            send.send_nowait(3)
    assert dict(got) == {"a": 1, "b": 2}  # (the order they then run in is the scheduler's)


async def test_a_sender_waits_for_room_and_its_item_keeps_its_place() -> None:
    send, receive = open_channel(1)
    send.send_nowait(1)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(send.send, 2)
        await trio.testing.wait_all_tasks_blocked()
        assert receive.statistics().tasks_waiting_send == 1
        assert receive.receive_nowait() == 1
        assert receive.receive_nowait() == 2  # (the waiting sender's item moved into the buffer)
    with pytest.raises(trio.WouldBlock):
        receive.receive_nowait()


async def test_closing_wakes_the_waiters_with_what_a_memory_channel_raises() -> None:
    send, receive = open_channel(0)
    async with trio.open_nursery() as nursery:

        async def read_to_the_end() -> None:
            with pytest.raises(trio.EndOfChannel):
                await receive.receive()

        nursery.start_soon(read_to_the_end)
        await trio.testing.wait_all_tasks_blocked()
        send.close()
    send, receive = open_channel(0)
    async with trio.open_nursery() as nursery:

        async def send_to_nobody() -> None:
            with pytest.raises(trio.BrokenResourceError):
                await send.send(1)

        nursery.start_soon(send_to_nobody)
        await trio.testing.wait_all_tasks_blocked()
        receive.close()


async def test_async_for_ends_with_the_channel_after_what_was_queued() -> None:
    send, receive = open_channel(4)
    for item in (1, 2, 3):
        send.send_nowait(item)
    send.close()
    assert [item async for item in receive] == [1, 2, 3]


async def test_receive_and_send_are_checkpoints_even_when_they_need_not_wait() -> None:
    send, receive = open_channel(4)
    with trio.CancelScope() as scope:
        scope.cancel()
        with pytest.raises(trio.Cancelled):
            await send.send(1)
    send.send_nowait(1)
    with trio.CancelScope() as scope:
        scope.cancel()
        with pytest.raises(trio.Cancelled):
            await receive.receive()
    assert receive.receive_nowait() == 1  # a cancelled receive took nothing


async def _park_and_cancel(send: ChannelSender[int], receive: ChannelReceiver[int]) -> None:
    async with trio.open_nursery() as nursery:
        nursery.start_soon(receive.receive)
        nursery.start_soon(send.send, 9)  # (a rendezvous: handed to the receiver at once)
        nursery.start_soon(receive.receive)
        await trio.testing.wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()


async def test_an_idle_channel_holds_no_buffer_and_no_waiters() -> None:
    send, receive = open_channel(8)
    for item in range(5):
        send.send_nowait(item)
    while True:
        try:
            receive.receive_nowait()
        except trio.WouldBlock:
            break
    state = receive._state
    assert (state.data, state.receivers, state.senders) == (None, None, None)
    await _park_and_cancel(*open_channel(0))
    await _park_and_cancel(send, receive)
    assert (state.data, state.receivers, state.senders) == (None, None, None)
