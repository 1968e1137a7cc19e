"""A bounded in-memory channel that costs little while it is idle: a session's inbound and outbound queues.

``trio.open_memory_channel`` gives each channel a state object with an
empty ``deque`` (760 bytes), two ordered dicts of waiting tasks and a set of
waiting tasks per endpoint: about 1.7 KB per channel before anything is sent,
and more while a task waits on it.  A session holds two channels for its
whole life and is idle most of it, so that was a tenth of what an idle
Streamable HTTP session cost.

This channel behaves like a memory channel without ``clone`` (one sending and
one receiving endpoint): the same exceptions (``WouldBlock``,
``ClosedResourceError``, ``BrokenResourceError``, ``EndOfChannel``), the same
checkpoints (``send`` and ``receive`` are checkpoints whether or not they
wait), first come first served among waiting tasks, and an item handed
straight to a waiting receiver.  What it holds is made when it is needed and
dropped when it empties: the buffer, and the lists of waiting tasks.
"""

from __future__ import annotations

import inspect
from types import TracebackType
from typing import Any, Final, Generic, TypeVar

import outcome
import trio
from trio.lowlevel import Abort, RaiseCancelT, Task, enable_ki_protection

__all__ = ["ChannelReceiver", "ChannelSender", "open_channel"]

T = TypeVar("T")

_PEAK_FIELD: Final = "peak_buffer_used" in inspect.signature(trio.MemoryChannelStatistics).parameters
"""(A field of trio's statistics since some release; not tracked here.)"""


class _State(Generic[T]):
    __slots__ = ("capacity", "data", "receive_open", "receivers", "send_open", "senders")

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.data: list[T] | None = None
        """Items sent and not yet received, oldest first (``None``: none)."""
        self.receivers: list[Task] | None = None
        """Tasks waiting in ``receive``, first come first (``None``: none); only while ``data`` is empty."""
        self.senders: list[tuple[Task, T]] | None = None
        """Tasks waiting in ``send`` with their item (``None``: none); only while ``data`` is full."""
        self.send_open = True
        self.receive_open = True

    def statistics(self) -> trio.MemoryChannelStatistics:
        fields: dict[str, Any] = {
            "current_buffer_used": len(self.data or ()),
            "max_buffer_size": self.capacity,
            "open_send_channels": int(self.send_open),
            "open_receive_channels": int(self.receive_open),
            "tasks_waiting_send": len(self.senders or ()),
            "tasks_waiting_receive": len(self.receivers or ()),
        }
        if _PEAK_FIELD:
            fields["peak_buffer_used"] = 0  # (not tracked)
        return trio.MemoryChannelStatistics(**fields)


def open_channel(capacity: int) -> tuple[ChannelSender[Any], ChannelReceiver[Any]]:
    """A channel buffering up to ``capacity`` items: its sending and its receiving endpoint."""
    if capacity < 0:
        raise ValueError("capacity must be >= 0")
    state: _State[Any] = _State(capacity)
    return ChannelSender(state), ChannelReceiver(state)


class _Abort:
    """A waiting task's abort function: it leaves its list of waiters (smaller than a closure)."""

    __slots__ = ("entry", "receiving", "state")

    def __init__(self, state: _State[Any], entry: object, *, receiving: bool) -> None:
        self.state = state
        self.entry = entry
        self.receiving = receiving

    def __call__(self, _: RaiseCancelT) -> Abort:
        state = self.state
        entries: list[Any] | None = state.receivers if self.receiving else state.senders
        if entries is not None:
            for index, candidate in enumerate(entries):
                if candidate is self.entry:
                    del entries[index]
                    break
            if not entries:
                if self.receiving:
                    state.receivers = None
                else:
                    state.senders = None
        return Abort.SUCCEEDED


class ChannelSender(trio.abc.SendChannel[T]):
    """The sending endpoint of :func:`open_channel` (as a ``MemorySendChannel``, without ``clone``)."""

    __slots__ = ("_state",)

    def __init__(self, state: _State[T]) -> None:
        self._state = state

    def statistics(self) -> trio.MemoryChannelStatistics:
        return self._state.statistics()

    @enable_ki_protection
    def send_nowait(self, value: T) -> None:
        """Like :meth:`send`, but raises ``WouldBlock`` instead of waiting for room."""
        state = self._state
        if not state.send_open:
            raise trio.ClosedResourceError
        if not state.receive_open:
            raise trio.BrokenResourceError
        receivers = state.receivers
        if receivers:
            task = receivers.pop(0)
            if not receivers:
                state.receivers = None
            trio.lowlevel.reschedule(task, outcome.Value(value))
            return
        data = state.data
        if data is None:
            if state.capacity < 1:
                raise trio.WouldBlock
            state.data = [value]
        elif len(data) < state.capacity:
            data.append(value)
        else:
            raise trio.WouldBlock

    @enable_ki_protection
    async def send(self, value: T) -> None:
        await trio.lowlevel.checkpoint_if_cancelled()
        try:
            self.send_nowait(value)
        except trio.WouldBlock:
            pass
        else:
            await trio.lowlevel.cancel_shielded_checkpoint()
            return
        state = self._state
        entry = (trio.lowlevel.current_task(), value)
        if state.senders is None:
            state.senders = []
        state.senders.append(entry)
        await trio.lowlevel.wait_task_rescheduled(_Abort(state, entry, receiving=False))

    @enable_ki_protection
    def close(self) -> None:
        """Close this endpoint: waiting senders get ``ClosedResourceError``, the receiver ``EndOfChannel``
        once the buffer is empty.  Not a checkpoint; idempotent."""
        state = self._state
        if not state.send_open:
            return
        state.send_open = False
        senders, state.senders = state.senders, None
        for task, _ in senders or ():
            trio.lowlevel.reschedule(task, outcome.Error(trio.ClosedResourceError()))
        receivers, state.receivers = state.receivers, None
        for task in receivers or ():
            trio.lowlevel.reschedule(task, outcome.Error(trio.EndOfChannel()))

    async def aclose(self) -> None:
        self.close()
        await trio.lowlevel.checkpoint()

    def __enter__(self) -> ChannelSender[T]:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc_value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()


class ChannelReceiver(trio.abc.ReceiveChannel[T]):
    """The receiving endpoint of :func:`open_channel` (as a ``MemoryReceiveChannel``, without ``clone``)."""

    __slots__ = ("_state",)

    def __init__(self, state: _State[T]) -> None:
        self._state = state

    def statistics(self) -> trio.MemoryChannelStatistics:
        return self._state.statistics()

    @enable_ki_protection
    def receive_nowait(self) -> T:
        """Like :meth:`receive`, but raises ``WouldBlock`` instead of waiting for an item."""
        state = self._state
        if not state.receive_open:
            raise trio.ClosedResourceError
        senders = state.senders
        if senders:
            task, value = senders.pop(0)
            if not senders:
                state.senders = None
            trio.lowlevel.reschedule(task)
            if state.data is None:
                state.data = [value]
            else:
                state.data.append(value)
        data = state.data
        if data:
            value = data.pop(0)
            if not data:
                state.data = None
            return value
        if not state.send_open:
            raise trio.EndOfChannel
        raise trio.WouldBlock

    @enable_ki_protection
    async def receive(self) -> T:
        await trio.lowlevel.checkpoint_if_cancelled()
        state = self._state
        if state.data or state.senders or not (state.send_open and state.receive_open):
            # Something to take, or an exception to raise: no wait.  (Asked before trying, rather
            # than trying and catching WouldBlock: a traceback through this frame would make it
            # keep a full frame object for as long as the receiver waits.)
            value = self.receive_nowait()
            await trio.lowlevel.cancel_shielded_checkpoint()
            return value
        received: T = await trio.lowlevel.wait_task_rescheduled(self._wait())
        return received

    def _wait(self) -> _Abort:
        """Queue the current task as a receiver; its abort function."""
        state = self._state
        task = trio.lowlevel.current_task()
        if state.receivers is None:
            state.receivers = []
        state.receivers.append(task)
        return _Abort(state, task, receiving=True)

    @enable_ki_protection
    def interrupt(self, error: BaseException) -> None:
        """Make the task waiting in :meth:`receive`, if any, raise ``error`` instead.

        So a task can wait for an item *or* for something else (its client
        leaving) without a cancel scope: the other event interrupts the wait.
        Nothing is taken from the channel.  Not a checkpoint.
        """
        state = self._state
        receivers, state.receivers = state.receivers, None
        for task in receivers or ():
            trio.lowlevel.reschedule(task, outcome.Error(error))

    @enable_ki_protection
    async def __anext__(self) -> T:
        """:meth:`receive` for ``async for``, in one coroutine (a waiting reader is one frame smaller)."""
        await trio.lowlevel.checkpoint_if_cancelled()
        state = self._state
        try:
            if state.data or state.senders or not (state.send_open and state.receive_open):
                value = self.receive_nowait()
                await trio.lowlevel.cancel_shielded_checkpoint()
                return value
            received: T = await trio.lowlevel.wait_task_rescheduled(self._wait())
            return received
        except trio.EndOfChannel:
            raise StopAsyncIteration from None

    @enable_ki_protection
    def close(self) -> None:
        """Close this endpoint: what is buffered is dropped, waiting receivers get ``ClosedResourceError``,
        senders ``BrokenResourceError``.  Not a checkpoint; idempotent."""
        state = self._state
        if not state.receive_open:
            return
        state.receive_open = False
        receivers, state.receivers = state.receivers, None
        for task in receivers or ():
            trio.lowlevel.reschedule(task, outcome.Error(trio.ClosedResourceError()))
        senders, state.senders = state.senders, None
        for task, _ in senders or ():
            trio.lowlevel.reschedule(task, outcome.Error(trio.BrokenResourceError()))
        state.data = None

    async def aclose(self) -> None:
        self.close()
        await trio.lowlevel.checkpoint()

    def __enter__(self) -> ChannelReceiver[T]:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc_value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()
