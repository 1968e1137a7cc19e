"""The session core: one MCP session as a Trio task owning two memory channels.

Theory of operation
-------------------
A :class:`Session` is transport-agnostic.  It has an id (128 random bits), the
principal that opened it, an *inbound* channel (messages the peer sent, fed by a
transport: today an HTTP POST, later a WebSocket frame or a broker) and an
*outbound* channel (JSON bytes the server layer wants delivered, drained by the
transport that holds the peer's stream).  Both channels are bounded, so neither
a flood of POSTs nor a peer that stops reading can grow memory without limit.

The :class:`SessionManager` starts each session's *handler* (the MCP server
layer) as a task in a nursery the manager owns, inside the session's own cancel
scope and error boundary:

* handler returns or raises -> the outbound channel closes, the transport ends
  the stream, the registry forgets the session.  An exception is logged once and
  ends only that session.
* the transport sees the peer go away -> :meth:`Session.close` cancels the
  session's scope; the same cleanup runs.
* the manager is drained -> every session is asked to finish (see
  :meth:`SessionManager.drain`).

Lookups go through a :class:`SessionRegistry`, the seam where a cross-process
registry (a broker that forwards a POST to the worker that holds the stream)
plugs in later.  A lookup that names a session owned by another principal looks
exactly like a lookup of an unknown one.
"""

from __future__ import annotations

import enum
import logging
import math
import re
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Protocol

import trio

from ._jsonrpc import JSONRPCMessage
from ._metrics import Metrics

__all__ = [
    "Delivery",
    "Incoming",
    "LocalSessionRegistry",
    "Refusal",
    "Session",
    "SessionClosed",
    "SessionHandler",
    "SessionLimits",
    "SessionManager",
    "SessionRefused",
    "SessionRegistry",
    "new_session_id",
]

log = logging.getLogger("trio_mcp_sse")

SESSION_ID_HEX_LENGTH = 32


def new_session_id() -> str:
    """128 bits from the OS CSPRNG, as 32 lowercase hex digits."""
    return secrets.token_hex(SESSION_ID_HEX_LENGTH // 2)


_SESSION_ID = re.compile(f"[0-9a-f]{{{SESSION_ID_HEX_LENGTH}}}")


def is_session_id(text: str) -> bool:
    """Exactly 32 lowercase hex digits (checked on every POST, hence one regex match)."""
    return _SESSION_ID.fullmatch(text) is not None


class SessionClosed(Exception):
    """The session ended (peer gone, handler finished, or dropped as too slow)."""


@dataclass(frozen=True, slots=True)
class Incoming:
    """One inbound message and the HTTP headers of the request that carried it."""

    message: JSONRPCMessage
    headers: Mapping[str, str] = field(default_factory=dict)


class Delivery(enum.Enum):
    """What happened to a message handed to :meth:`Session.deliver`."""

    ACCEPTED = "accepted"
    """In the session's inbound channel: the session will see it."""
    GONE = "gone"
    """The session ended before the message could be queued."""
    BUSY = "busy"
    """The inbound channel stayed full for the whole delivery bound."""
    DRAINING = "draining"
    """The session is finishing its work before the server stops; it takes no more."""


class Refusal(enum.Enum):
    """Why :meth:`SessionManager.open_session` would not open a session."""

    DRAINING = "draining"
    AT_CAPACITY = "at capacity"


class SessionRefused(Exception):
    def __init__(self, reason: Refusal) -> None:
        super().__init__(reason.value)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class SessionLimits:
    """Bounds that keep one session from costing unbounded memory or time.

    ``inbound_buffer`` / ``outbound_buffer`` are channel capacities in messages.
    ``deliver_timeout`` is how long a POST may wait for room in a full inbound
    channel before it is refused (503): never a 202 for a dropped message.
    ``send_timeout`` is how long the server layer may wait for room in a full
    outbound channel -- i.e. for a peer that stopped reading -- before the
    session is closed as too slow.  ``close_timeout`` bounds how long a closing
    session may take to unwind its handler.  ``max_sessions`` caps concurrent
    sessions per process (further streams get 503); ``idle_timeout`` closes a
    session that saw no message in either direction for that many seconds
    (keepalives do not count).  ``None`` disables either.
    """

    max_sessions: int | None = 10_000
    idle_timeout: float | None = 30 * 60.0
    inbound_buffer: int = 64
    outbound_buffer: int = 256
    deliver_timeout: float = 10.0
    send_timeout: float = 30.0
    close_timeout: float = 5.0

    def __post_init__(self) -> None:
        for name in ("inbound_buffer", "outbound_buffer", "max_sessions"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1")
        for name in ("deliver_timeout", "send_timeout", "close_timeout", "idle_timeout"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"{name} must be > 0")


class Session:
    """One MCP session.  Created by :class:`SessionManager`, not directly."""

    def __init__(
        self,
        session_id: str,
        *,
        principal: str | None,
        headers: Mapping[str, str],
        limits: SessionLimits,
        metrics: Metrics | None = None,
    ) -> None:
        self.id = session_id
        self.principal = principal
        self.headers = headers
        """Headers of the request that opened the session (e.g. the SSE GET)."""
        self._limits = limits
        self._inbound_send, self.incoming = trio.open_memory_channel[Incoming](limits.inbound_buffer)
        self._outbound_send, self.outgoing = trio.open_memory_channel[bytes](limits.outbound_buffer)
        self.cancel_scope = trio.CancelScope()
        self.finished = trio.Event()
        self.close_reason: str | None = None
        self.draining = False
        self._metrics = metrics or Metrics()
        self._idle_timeout = limits.idle_timeout
        self.on_outgoing: Callable[[], None] | None = None
        """Called after an item is queued on ``outgoing`` or the channel is closed.

        A writer that waits for something else besides ``outgoing`` (the SSE
        stream waits for the client's disconnect) sets it to be woken, instead
        of parking a second task on the channel.
        """
        self._touch()

    def _wake(self) -> None:
        if self.on_outgoing is not None:
            self.on_outgoing()

    def _touch(self) -> None:
        """Push the idle deadline back: the session's own cancel scope expires when idle.

        Moving a deadline costs Trio a heap update, so a busy session moves it at
        most once a second (the timeout is honoured to within that second).
        """
        if self._idle_timeout is not None and self.close_reason is None:
            deadline = trio.current_time() + self._idle_timeout
            current = self.cancel_scope.deadline
            if current == math.inf or deadline - current >= 1.0:
                self.cancel_scope.deadline = deadline

    def __repr__(self) -> str:
        return f"<Session {self.id[:8]}…>"

    @property
    def closed(self) -> bool:
        return self.close_reason is not None or self.finished.is_set()

    # -- called by the server layer ------------------------------------------------
    async def send(self, data: bytes) -> None:
        """Queue one encoded JSON-RPC message for the peer.

        Waits at most ``send_timeout`` for room.  A peer that leaves the buffer
        full that long is not reading; holding its messages would cost memory
        for nothing, so the session is closed and :class:`SessionClosed` raised.
        """
        try:
            self._outbound_send.send_nowait(data)
        except trio.WouldBlock:
            pass
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            raise SessionClosed(self.close_reason or "session closed") from None
        else:
            self._metrics.messages_out += 1
            self._touch()
            self._wake()
            return
        with trio.move_on_after(self._limits.send_timeout):
            try:
                await self._outbound_send.send(data)
            except (trio.ClosedResourceError, trio.BrokenResourceError):
                raise SessionClosed(self.close_reason or "session closed") from None
            self._metrics.messages_out += 1
            self._touch()
            self._wake()
            return
        log.warning(
            "session %s: peer is not reading (outbound buffer full for %.1fs); closing it",
            self.id,
            self._limits.send_timeout,
            extra={"event": "session_slow_consumer", "session_id": self.id},
        )
        self.close("slow consumer")
        raise SessionClosed("slow consumer")

    # -- called by transports --------------------------------------------------------
    async def deliver(self, item: Incoming) -> Delivery:
        """Put one inbound message into the session, waiting a bounded time for room."""
        if self.closed:
            return Delivery.GONE
        if self.draining:
            return Delivery.DRAINING
        try:
            self._inbound_send.send_nowait(item)
        except trio.WouldBlock:
            pass
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            return self._refusal()
        else:
            self._metrics.messages_in += 1
            self._touch()
            return Delivery.ACCEPTED
        with trio.move_on_after(self._limits.deliver_timeout):
            try:
                await self._inbound_send.send(item)
            except (trio.ClosedResourceError, trio.BrokenResourceError):
                return self._refusal()
            self._metrics.messages_in += 1
            self._touch()
            return Delivery.ACCEPTED
        return Delivery.BUSY

    def _refusal(self) -> Delivery:
        return Delivery.DRAINING if self.draining and not self.closed else Delivery.GONE

    def send_nowait(self, data: bytes) -> bool:
        """Queue an outbound message if there is room right now; report whether it was."""
        try:
            self._outbound_send.send_nowait(data)
        except (trio.WouldBlock, trio.ClosedResourceError, trio.BrokenResourceError):
            return False
        self._metrics.messages_out += 1
        self._wake()
        return True

    def wake_writer(self) -> bool:
        """Queue an empty item: the transport's writer sends a keepalive for it.

        Not a message: no metrics, no idle-timer reset.  Returns False when the
        outbound buffer is full (the writer is busy, which keeps the line alive anyway).
        """
        try:
            self._outbound_send.send_nowait(b"")
        except (trio.WouldBlock, trio.ClosedResourceError, trio.BrokenResourceError):
            return False
        self._wake()
        return True

    def close(self, reason: str = "closed") -> None:
        """Ask the session to end: cancels its handler.  Idempotent, never blocks."""
        if self.close_reason is None:
            self.close_reason = reason
        self.cancel_scope.cancel()

    def drain(self) -> None:
        """Ask the session to finish: no new inbound messages, the handler sees the end of
        ``incoming`` after the ones already accepted, and the stream ends once it returns."""
        self.draining = True
        self._inbound_send.close()

    def _close_channels(self) -> None:
        self._inbound_send.close()
        self.incoming.close()
        self._outbound_send.close()
        self._wake()


SessionHandler = Callable[[Session], Awaitable[None]]
"""The server layer: runs for the session's lifetime, reading ``session.incoming``."""


class SessionRegistry(Protocol):
    """Where sessions are found by id.  In-process today; a broker can implement it later."""

    def add(self, session: Session) -> None: ...

    def discard(self, session: Session) -> None: ...

    def lookup(self, session_id: str, principal: str | None) -> Session | None: ...

    def __len__(self) -> int: ...

    def __iter__(self) -> Iterator[Session]: ...


class LocalSessionRegistry:
    """Sessions of this process, in a dict."""

    def __init__(self) -> None:
        self._sessions: dict[str, Session] = {}

    def add(self, session: Session) -> None:
        if session.id in self._sessions:
            raise ValueError(f"duplicate session id {session.id}")
        self._sessions[session.id] = session

    def discard(self, session: Session) -> None:
        if self._sessions.get(session.id) is session:
            del self._sessions[session.id]

    def lookup(self, session_id: str, principal: str | None) -> Session | None:
        session = self._sessions.get(session_id)
        if session is None or session.principal != principal:
            return None
        return session

    def __len__(self) -> int:
        return len(self._sessions)

    def __iter__(self) -> Iterator[Session]:
        return iter(list(self._sessions.values()))


class SessionManager:
    """Starts, tracks and ends sessions; owns the nursery their tasks run in."""

    def __init__(
        self,
        handler: SessionHandler,
        *,
        limits: SessionLimits | None = None,
        registry: SessionRegistry | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.handler = handler
        self.limits = limits or SessionLimits()
        self.registry: SessionRegistry = registry if registry is not None else LocalSessionRegistry()
        self.metrics = metrics or Metrics()
        self.draining = False
        self._nursery: trio.Nursery | None = None
        self._all_finished = trio.Event()
        self._all_finished.set()
        self._live = 0

    @property
    def running(self) -> bool:
        return self._nursery is not None

    @asynccontextmanager
    async def run(self) -> AsyncIterator[SessionManager]:
        """Own a nursery for session tasks for the duration of the block.

        On exit every remaining session is closed (their handlers cancelled)
        and waited for, so nothing outlives the block.
        """
        if self._nursery is not None:
            raise RuntimeError("SessionManager is already running")
        self.draining = False
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                try:
                    yield self
                finally:
                    self._nursery = None
                    for session in self.registry:
                        session.close("server shutting down")
        finally:
            self._nursery = None

    def check_admission(self) -> Refusal | None:
        """Would a new session be refused right now, and why?"""
        if self.draining:
            return Refusal.DRAINING
        limit = self.limits.max_sessions
        if limit is not None and self._live >= limit:
            return Refusal.AT_CAPACITY
        return None

    async def open_session(
        self,
        *,
        principal: str | None = None,
        headers: Mapping[str, str] | None = None,
        nursery: trio.Nursery | None = None,
    ) -> Session:
        """Register a new session and start its handler task.

        The task runs in the manager's nursery when it is running, else in the
        ``nursery`` the caller passes (a transport that was not given a lifespan
        hosts the session in its own request's nursery).  Raises
        :class:`SessionRefused` while draining or at ``max_sessions``.
        """
        refusal = self.check_admission()
        if refusal is not None:
            raise SessionRefused(refusal)
        host = self._nursery or nursery
        if host is None:
            raise RuntimeError("SessionManager is not running and no nursery was given")
        session = Session(
            new_session_id(), principal=principal, headers=headers or {}, limits=self.limits, metrics=self.metrics
        )
        self.registry.add(session)
        self._live += 1
        if self._all_finished.is_set():
            self._all_finished = trio.Event()
        try:
            await host.start(self._run_session, session)
        except BaseException:
            self._forget(session)
            session._close_channels()
            session.finished.set()
            raise
        self.metrics.sessions_opened += 1
        log.debug(
            "session %s opened",
            session.id,
            extra={"event": "session_opened", "session_id": session.id, "principal": principal},
        )
        return session

    def _forget(self, session: Session) -> None:
        self.registry.discard(session)
        self._live -= 1
        if self._live == 0:
            self._all_finished.set()

    async def _run_session(
        self, session: Session, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """The session task: the handler inside the session's scope and error boundary."""
        try:
            with session.cancel_scope:
                task_status.started()
                # The status object references the nursery trio opened for the start-up
                # phase; this frame would keep it (~1 KB) alive as long as the session.
                del task_status
                try:
                    await self.handler(session)
                except* SessionClosed:
                    pass
                except* Exception:
                    # The error boundary: one broken session must not take the
                    # manager's nursery (and every other session) down with it.
                    log.exception(
                        "session %s: handler failed; closing this session",
                        session.id,
                        extra={"event": "session_failed", "session_id": session.id},
                    )
                    session.close("handler failed")
            if session.cancel_scope.cancelled_caught and session.close_reason is None:
                session.close_reason = "idle timeout"
                log.info(
                    "session %s: idle for %.0fs; closing it",
                    session.id,
                    self.limits.idle_timeout,
                    extra={"event": "session_idle", "session_id": session.id},
                )
        finally:
            self._forget(session)
            session._close_channels()
            session.finished.set()
            reason = session.close_reason or ("drained" if session.draining else "handler returned")
            self.metrics.sessions_closed[reason] += 1
            log.debug(
                "session %s closed (%s)",
                session.id,
                reason,
                extra={"event": "session_closed", "session_id": session.id, "reason": reason},
            )

    async def close_session(self, session: Session, reason: str) -> None:
        """Close a session and wait (bounded, shielded) until its task has unwound."""
        session.close(reason)
        with trio.CancelScope(shield=True), trio.move_on_after(self.limits.close_timeout):
            await session.finished.wait()
        if not session.finished.is_set():
            log.warning(
                "session %s did not unwind within %.1fs",
                session.id,
                self.limits.close_timeout,
                extra={"event": "session_stuck", "session_id": session.id},
            )

    async def drain(self, grace_period: float) -> None:
        """Stop taking sessions, let every session finish its accepted work, then close the rest.

        New sessions are refused at once.  Each session stops taking messages and
        its handler sees the end of ``incoming``; a handler that returns within
        ``grace_period`` seconds ends its stream cleanly.  Whatever is still
        running after that is cancelled.  Returns once every session task is gone (or
        ``close_timeout`` later, for handlers that ignore cancellation).
        """
        self.draining = True
        for session in self.registry:
            session.drain()
        with trio.move_on_after(grace_period):
            await self._all_finished.wait()
        leftovers = list(self.registry)
        if leftovers:
            log.warning(
                "%d session(s) still busy after the %.1fs drain; cancelling them",
                len(leftovers),
                grace_period,
                extra={"event": "drain_timeout", "sessions": len(leftovers)},
            )
            for session in leftovers:
                session.close("server shutting down")
            with trio.move_on_after(self.limits.close_timeout):
                await self._all_finished.wait()
