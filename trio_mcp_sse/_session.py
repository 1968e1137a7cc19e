"""The session core: one MCP session's lifecycle, channels and task, behind a registry seam.

Theory of operation
-------------------
A :class:`Session` is transport-agnostic.  It has an id (128 random bits), the
principal that opened it, an *inbound* channel (messages the peer sent, fed by
a transport through the registry: an HTTP POST today, a WebSocket frame or a
broker later) and an *outbound* channel of :class:`Outgoing` items (JSON bytes
the server layer wants delivered, each tagged with the client request it
belongs to, drained by the transport that holds the peer's stream).  Both
channels are bounded, so neither a flood of POSTs nor a peer that stops reading
can grow memory without limit.

Every session moves through one state machine, and only :meth:`Session._transition`
moves it (the table is ``_TRANSITIONS``)::

    OPEN ──drain──> DRAINING ──finish──> CLOSED
      │                │                   ^
      └────close───────┴──> CLOSING ─finish┘
      └──────────────────finish────────────┘

* ``OPEN``: messages in and out flow.
* ``DRAINING``: the server is stopping.  The inbound channel is closed (the
  handler sees the end of ``incoming`` after the messages already accepted),
  new deliveries get :attr:`Delivery.DRAINING`, outbound messages still flow so
  in-flight requests can answer.
* ``CLOSING``: someone asked the session to end (peer gone, too slow, idle,
  handler failed, shutdown); its cancel scope is cancelled, the reason recorded.
* ``CLOSED``: the session task has unwound; channels are closed, the registry
  has forgotten it.  Terminal.

``close`` is idempotent (the first reason wins), ``drain`` of a closing session
is a no-op, and ``finish`` is always last.  What a delivery gets is derived
from the state alone (``_DELIVERY_BY_STATE``), so a transport never has to
combine flags to answer a POST.

The :class:`SessionManager` hosts every session task in the one nursery it
owns (:meth:`SessionManager.run`), inside the session's cancel scope and
error boundary.  Deliveries go through a :class:`SessionRegistry`, the seam where a
cross-process broker plugs in: it takes a session id, a principal and a
message and answers a :class:`Delivery`; it never hands a ``Session`` back.  A
session of another principal is indistinguishable from an unknown one.
"""

from __future__ import annotations

import enum
import logging
import math
import re
import secrets
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final, Protocol

import trio

from ._access_token import AccessToken
from ._broker import WORKER_TOKEN
from ._channel import ChannelReceiver, ChannelSender, open_channel
from ._jsonrpc import InvalidMessage, JSONRPCMessage, RequestId
from ._metrics import Metrics

__all__ = [
    "Delivery",
    "Incoming",
    "LocalSessionRegistry",
    "OutboundBudget",
    "Outbox",
    "Outgoing",
    "Refusal",
    "Session",
    "SessionClaims",
    "SessionClosed",
    "SessionHandler",
    "SessionLimits",
    "SessionManager",
    "SessionRefused",
    "SessionRegistry",
    "SessionState",
    "new_session_id",
]

log = logging.getLogger("trio_mcp_sse")

SESSION_ID_HEX_LENGTH = 32


def new_session_id(owner_prefix: str = "") -> str:
    """128 bits from the OS CSPRNG, as 32 lowercase hex digits, after ``owner_prefix``.

    With a broker the prefix is the owning worker's id and a ``.``
    (:func:`~trio_mcp_sse._broker.task_id_prefix`), so that any worker can send
    a request for the session straight to its owner; it is a hint, never a
    secret: the random part alone makes the id unguessable.  Without a broker
    the prefix is empty and the id is the 32 hex digits alone.
    """
    return owner_prefix + secrets.token_hex(SESSION_ID_HEX_LENGTH // 2)


_SESSION_ID = re.compile(f"(?:{WORKER_TOKEN}\\.)?[0-9a-f]{{{SESSION_ID_HEX_LENGTH}}}")


def is_session_id(text: str) -> bool:
    """32 lowercase hex digits, alone or after a worker id and a ``.`` (checked on every request, hence one
    regex match)."""
    return _SESSION_ID.fullmatch(text) is not None


class SessionClosed(Exception):
    """The session ended (peer gone, handler finished, or dropped as too slow)."""


@dataclass(frozen=True, slots=True)
class Incoming:
    """One inbound message, the HTTP headers of the request that carried it, and its access token.

    ``access_token`` is what the verifier said of that request's bearer token
    (``None``: no authentication, or an anonymous request); tools read it as
    ``Context.access_token``.  A session outlives tokens (a client refreshes
    its token mid-session), so each message carries its own.
    """

    message: JSONRPCMessage
    headers: Mapping[str, str] = field(default_factory=dict)
    access_token: AccessToken | None = None


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One item on a session's outbound channel.

    ``data`` is one encoded JSON-RPC message; ``related_request_id`` names the
    client request it belongs to (its response, or a notification or request
    sent while serving it), ``None`` when it belongs to none.  A transport with
    one stream per session ignores the id; one with a response stream per
    request routes by it.  Empty ``data`` is the keepalive clock asking the
    writer for a keepalive, not a message.
    """

    data: bytes
    related_request_id: RequestId | None = None
    final: bool = False
    """The last item for ``related_request_id``: its response, or (empty ``data``) the
    notice that it ended without one (the client cancelled it).  A transport that
    holds a stream per request ends that stream here."""
    reconnect: bool = False
    """Ask the client to reconnect: a transport with a stream per request ends that
    request's HTTP response now (after a ``retry`` hint), keeps its later messages
    for a ``Last-Event-ID`` resume, and the request goes on.  Others ignore it."""


_WAKE: Final = Outgoing(b"")  # shared: a keepalive request allocates nothing
_NO_HEADERS: Final[Mapping[str, str]] = MappingProxyType({})


class SessionState(enum.Enum):
    """Where a session is in its life (see the module docstring)."""

    OPEN = "open"
    DRAINING = "draining"
    CLOSING = "closing"
    CLOSED = "closed"


class _Event(enum.Enum):
    DRAIN = "drain"
    CLOSE = "close"
    FINISH = "finish"


_TRANSITIONS: Final[dict[tuple[SessionState, _Event], SessionState]] = {
    (SessionState.OPEN, _Event.DRAIN): SessionState.DRAINING,
    (SessionState.OPEN, _Event.CLOSE): SessionState.CLOSING,
    (SessionState.OPEN, _Event.FINISH): SessionState.CLOSED,
    (SessionState.DRAINING, _Event.DRAIN): SessionState.DRAINING,
    (SessionState.DRAINING, _Event.CLOSE): SessionState.CLOSING,
    (SessionState.DRAINING, _Event.FINISH): SessionState.CLOSED,
    (SessionState.CLOSING, _Event.DRAIN): SessionState.CLOSING,
    (SessionState.CLOSING, _Event.CLOSE): SessionState.CLOSING,
    (SessionState.CLOSING, _Event.FINISH): SessionState.CLOSED,
    (SessionState.CLOSED, _Event.DRAIN): SessionState.CLOSED,
    (SessionState.CLOSED, _Event.CLOSE): SessionState.CLOSED,
    (SessionState.CLOSED, _Event.FINISH): SessionState.CLOSED,
}


class Delivery(enum.Enum):
    """What happened to a message handed to :meth:`SessionRegistry.deliver`."""

    ACCEPTED = "accepted"
    """In the session's inbound channel: the session will see it."""
    REJECTED = "rejected"
    """Not a JSON-RPC message; the session's stream was sent the JSON-RPC error."""
    GONE = "gone"
    """No such session for this principal, or it ended before the message could be queued."""
    BUSY = "busy"
    """The inbound channel stayed full for the whole delivery bound."""
    DRAINING = "draining"
    """The session is finishing its work before the server stops; it takes no more."""


_DELIVERY_BY_STATE: Final = {
    SessionState.DRAINING: Delivery.DRAINING,
    SessionState.CLOSING: Delivery.GONE,
    SessionState.CLOSED: Delivery.GONE,
}
"""What a delivery gets in every state but OPEN (where it is queued)."""


class Refusal(enum.Enum):
    """Why :meth:`SessionManager.open_session` would not open a session."""

    DRAINING = "draining"
    AT_CAPACITY = "at capacity"
    BROKER_UNAVAILABLE = "broker unavailable"
    """Sessions are shared through a broker (several workers) and it did not answer."""


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

    ``outbound_bytes`` caps the bytes queued for one session's writer and not
    yet taken by it; ``outbound_bytes_total`` caps them for every session of
    the process together.  Counting messages alone does not bound memory (256
    results of 3 MB are 768 MB), so a session whose backlog would grow past its
    byte budget is closed as a slow consumer at once, and when the process
    budget is exceeded the session with the largest backlog is closed.  One
    message is always accepted into an empty queue, whatever its size; keep
    ``outbound_bytes`` well above twice the largest message, since results
    that finish together can queue before the writer runs.  ``None`` disables
    either.  ``write_timeout`` bounds one write to a client's
    socket under hypercorn's trio worker: a peer that does not read for that
    long has its connection closed (see ``docs/operations.md``).
    """

    max_sessions: int | None = 10_000
    idle_timeout: float | None = 30 * 60.0
    inbound_buffer: int = 64
    outbound_buffer: int = 256
    deliver_timeout: float = 10.0
    send_timeout: float = 30.0
    close_timeout: float = 5.0
    outbound_bytes: int | None = 16 * 1024 * 1024
    outbound_bytes_total: int | None = 256 * 1024 * 1024
    write_timeout: float = 30.0

    def __post_init__(self) -> None:
        for name in ("inbound_buffer", "outbound_buffer", "max_sessions", "outbound_bytes", "outbound_bytes_total"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1")
        for name in ("deliver_timeout", "send_timeout", "close_timeout", "idle_timeout", "write_timeout"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"{name} must be > 0")


class OutboundBudget:
    """Bytes queued for the writers of every session of one manager (one process), bounded.

    Outboxes with a backlog are tracked so that, when the total would pass the
    limit, the one furthest behind can be closed: the peer that is not reading
    pays, not the healthy session that happens to send next.
    """

    __slots__ = ("backlogged", "limit", "queued")

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self.queued = 0
        self.backlogged: set[Outbox] = set()

    def relieve(self, size: int, sender: Outbox) -> None:
        """Close the sessions furthest behind (never ``sender``'s) until ``size`` more bytes fit."""
        limit = self.limit
        assert limit is not None
        victims = sorted(self.backlogged, key=lambda outbox: outbox.queued_bytes, reverse=True)
        for victim in victims:
            if self.queued + size <= limit or victim.queued_bytes <= sender.queued_bytes:
                return  # it fits now, or the sender is the one furthest behind
            victim.drop("the process outbound budget is exhausted")


class Outbox:
    """The receiving end of a session's outbound channel: what the transport's writer drains.

    A thin wrapper over the memory channel that keeps the byte count of what is
    queued: each item's bytes go back to the session's and the process's
    budgets as the writer takes it, and closing it discards (and gives back)
    whatever is still queued.  It refers to its session weakly: a session must
    stay free of reference cycles, so that it is freed the moment it ends
    rather than at the next full garbage collection.
    """

    __slots__ = ("__weakref__", "_budget", "_channel", "_session", "queued_bytes")

    def __init__(self, session: Session, channel: ChannelReceiver[Outgoing], budget: OutboundBudget) -> None:
        self._session = weakref.ref(session)
        self._channel = channel
        self._budget = budget
        self.queued_bytes = 0
        """Bytes queued and not yet taken by the writer."""

    def _added(self, size: int) -> None:
        if not self.queued_bytes:
            self._budget.backlogged.add(self)
        self.queued_bytes += size
        self._budget.queued += size

    def _taken(self, size: int) -> None:
        self.queued_bytes -= size
        self._budget.queued -= size
        if not self.queued_bytes:
            self._budget.backlogged.discard(self)

    def receive_nowait(self) -> Outgoing:
        item = self._channel.receive_nowait()
        if item.data:
            self._taken(len(item.data))
        return item

    async def receive(self) -> Outgoing:
        item = await self._channel.receive()
        if item.data:
            self._taken(len(item.data))
        return item

    def statistics(self) -> trio.MemoryChannelStatistics:
        return self._channel.statistics()

    def __aiter__(self) -> Outbox:
        return self

    async def __anext__(self) -> Outgoing:
        try:
            return await self.receive()
        except trio.EndOfChannel:
            raise StopAsyncIteration from None

    def drop(self, why: str) -> None:
        """Close the session as a slow consumer (its queue is freed with it)."""
        session = self._session()
        if session is not None:
            session.drop_slow_consumer(why)
        else:
            self.discard()

    def discard(self) -> None:
        """Drop everything queued now (the peer will never read it)."""
        while True:
            try:
                self.receive_nowait()
            except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
                return

    def close(self) -> None:
        self.discard()
        self._channel.close()


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
        stateless: bool = False,
        budget: OutboundBudget | None = None,
        peer: str | None = None,
    ) -> None:
        self.id = session_id
        self.principal = principal
        self.stateless = stateless
        """The session serves one request of a stateless transport: no handshake came
        before it, and nothing the client sends later can reach it (so the server
        layer cannot send it requests: their answers would have nowhere to go)."""
        self.headers = headers
        """Headers of the request that opened the session (e.g. the SSE GET)."""
        self.peer = peer
        """The client's address as ``host:port`` when the transport knows it (for logs)."""
        self._limits = limits
        # Lean channels (see _channel): a trio memory channel costs 1.7 KB before its first item.
        self._inbound_send: ChannelSender[Incoming]
        self.incoming: ChannelReceiver[Incoming]
        self._inbound_send, self.incoming = open_channel(limits.inbound_buffer)
        """The messages the peer sent, in order: what the server layer reads (``async for``)."""
        self._outbound_send: ChannelSender[Outgoing]
        outgoing: ChannelReceiver[Outgoing]
        self._outbound_send, outgoing = open_channel(limits.outbound_buffer)
        self._budget = budget if budget is not None else OutboundBudget(limits.outbound_bytes_total)
        self.outgoing = Outbox(self, outgoing, self._budget)
        self.cancel_scope = trio.CancelScope()
        self._finished: trio.Event | None = None
        self._state = SessionState.OPEN
        self._close_reason: str | None = None
        self._metrics = metrics or Metrics()
        self._idle_timeout = limits.idle_timeout
        self.on_outgoing: Callable[[], None] | None = None
        """Called after an item is queued on ``outgoing`` or the channel is closed.

        A writer that waits for something else besides ``outgoing`` (the SSE
        stream waits for the client's disconnect) sets it to be woken, instead
        of parking a second task on the channel.
        """
        self._touch()

    def __repr__(self) -> str:
        return f"<Session {self.id[:8]}… {self._state.value}>"

    @property
    def finished(self) -> trio.Event:
        """Set once the session is ``CLOSED`` (its task has unwound).

        Made on first use: most sessions end without anyone waiting for them.
        """
        finished = self._finished
        if finished is None:
            finished = self._finished = trio.Event()
            if self._state is SessionState.CLOSED:
                finished.set()
        return finished

    # -- the state machine -----------------------------------------------------------------
    @property
    def state(self) -> SessionState:
        return self._state

    @property
    def close_reason(self) -> str | None:
        """Why the session was asked to close; ``None`` while open, draining, or when it ended by itself."""
        return self._close_reason

    @property
    def closed(self) -> bool:
        """Closing or closed: it takes no more messages in either direction."""
        return self._state is SessionState.CLOSING or self._state is SessionState.CLOSED

    @property
    def draining(self) -> bool:
        return self._state is SessionState.DRAINING

    def _transition(self, event: _Event, reason: str | None = None) -> None:
        """The only place the state changes; each state's side effects happen here, once."""
        before = self._state
        after = _TRANSITIONS[before, event]
        if after is before:
            return
        self._state = after
        if after is SessionState.DRAINING:
            self._inbound_send.close()
        elif after is SessionState.CLOSING:
            self._close_reason = reason or "closed"
            self.cancel_scope.cancel()
        elif after is SessionState.CLOSED:
            self._inbound_send.close()
            self.incoming.close()
            self._outbound_send.close()
            self._wake()
            if self._finished is not None:
                self._finished.set()

    def close(self, reason: str = "closed") -> None:
        """Ask the session to end: cancels its handler.  Idempotent (the first reason wins), never blocks."""
        self._transition(_Event.CLOSE, reason)

    def drain(self) -> None:
        """Ask the session to finish: no new inbound messages, the handler sees the end of
        ``incoming`` after the ones already accepted, and the stream ends once it returns."""
        self._transition(_Event.DRAIN)

    def _finish(self) -> None:
        self._transition(_Event.FINISH)

    # -- outbound bytes ----------------------------------------------------------------------
    @property
    def queued_bytes(self) -> int:
        """Bytes queued on ``outgoing`` and not yet taken by the writer."""
        return self.outgoing.queued_bytes

    def _room_for(self, size: int) -> bool:
        """May ``size`` more bytes be queued?  Makes room in the process budget if it must."""
        queued = self.outgoing.queued_bytes
        limit = self._limits.outbound_bytes
        if queued and limit is not None and queued + size > limit:
            return False
        budget = self._budget
        if budget.limit is not None and budget.queued + size > budget.limit:
            budget.relieve(size, self.outgoing)
            if queued and budget.queued + size > budget.limit:
                return False
        return True

    def drop_slow_consumer(self, why: str) -> None:
        """Close the session because its peer is not reading, and free what it had queued."""
        if not self.closed:
            log.warning(
                "session %s (peer %s) is not reading: %s; %d bytes unread; closing it as a slow consumer",
                self.id,
                self.peer or "unknown",
                why,
                self.queued_bytes,
                extra={"event": "session_slow_consumer", "session_id": self.id, "peer": self.peer},
            )
            self.close("slow consumer")
        self.outgoing.discard()

    # -- housekeeping ----------------------------------------------------------------------
    def _wake(self) -> None:
        if self.on_outgoing is not None:
            self.on_outgoing()

    def _touch(self) -> None:
        """Push the idle deadline back: the session's own cancel scope expires when idle.

        Moving a deadline costs Trio a heap update, so a busy session moves it at
        most once a second (the timeout is honoured to within that second).
        """
        if self._idle_timeout is not None and self._state is not SessionState.CLOSING:
            deadline = trio.current_time() + self._idle_timeout
            current = self.cancel_scope.deadline
            if current == math.inf or deadline - current >= 1.0:
                self.cancel_scope.deadline = deadline

    # -- called by the server layer --------------------------------------------------------
    async def send(
        self, data: bytes, *, related_request_id: RequestId | None = None, final: bool = False, reconnect: bool = False
    ) -> None:
        """Queue one encoded JSON-RPC message for the peer.

        ``related_request_id`` is the client request this message belongs to
        (``None``: none).  Waits at most ``send_timeout`` for room.  A peer that
        leaves the buffer full that long is not reading; holding its messages
        would cost memory for nothing, so the session is closed and
        :class:`SessionClosed` raised.
        """
        item = Outgoing(data, related_request_id, final, reconnect)
        size = len(data)
        if size and not self._room_for(size):
            if self.closed:
                raise SessionClosed(self._close_reason or "session closed")
            self.drop_slow_consumer(f"its outbound backlog would pass {self._limits.outbound_bytes} bytes")
            raise SessionClosed("slow consumer")
        try:
            self._outbound_send.send_nowait(item)
        except trio.WouldBlock:
            pass
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            raise SessionClosed(self._close_reason or "session closed") from None
        else:
            if size:
                self.outgoing._added(size)
            self._metrics.messages_out += 1
            self._touch()
            self._wake()
            return
        with trio.move_on_after(self._limits.send_timeout):
            try:
                await self._outbound_send.send(item)
            except (trio.ClosedResourceError, trio.BrokenResourceError):
                raise SessionClosed(self._close_reason or "session closed") from None
            if size:
                self.outgoing._added(size)
            self._metrics.messages_out += 1
            self._touch()
            self._wake()
            return
        self.drop_slow_consumer(f"its outbound buffer stayed full for {self._limits.send_timeout:.1f}s")
        raise SessionClosed("slow consumer")

    def send_nowait(self, data: bytes, *, related_request_id: RequestId | None = None, final: bool = False) -> bool:
        """Queue an outbound message if there is room right now; report whether it was."""
        size = len(data)
        if size and not self._room_for(size):
            return False
        try:
            self._outbound_send.send_nowait(Outgoing(data, related_request_id, final))
        except (trio.WouldBlock, trio.ClosedResourceError, trio.BrokenResourceError):
            return False
        if size:
            self.outgoing._added(size)
        self._metrics.messages_out += 1
        self._wake()
        return True

    # -- called by the registry and transports ---------------------------------------------
    async def deliver(self, item: Incoming | InvalidMessage) -> Delivery:
        """Put one inbound message into the session, waiting a bounded time for room.

        An :class:`InvalidMessage` (a POST body that was not a message) is not
        queued: its JSON-RPC error goes down the session's stream, so a peer
        that reads only the stream learns why, and the answer is ``REJECTED``.
        """
        if self._state is not SessionState.OPEN or type(item) is not Incoming:
            # Off the hot path (enum hashing is slow in Python): a refusal, or a report.
            refused = _DELIVERY_BY_STATE.get(self._state)
            if isinstance(item, InvalidMessage):
                if refused is Delivery.GONE:
                    return refused
                self.send_nowait(item.to_json(), related_request_id=item.request_id)
                return Delivery.REJECTED
            if refused is not None:
                return refused
        try:
            self._inbound_send.send_nowait(item)
        except trio.WouldBlock:
            pass
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            return _DELIVERY_BY_STATE.get(self._state, Delivery.GONE)
        else:
            self._metrics.messages_in += 1
            self._touch()
            return Delivery.ACCEPTED
        with trio.move_on_after(self._limits.deliver_timeout):
            try:
                await self._inbound_send.send(item)
            except (trio.ClosedResourceError, trio.BrokenResourceError):
                return _DELIVERY_BY_STATE.get(self._state, Delivery.GONE)
            self._metrics.messages_in += 1
            self._touch()
            return Delivery.ACCEPTED
        return Delivery.BUSY

    def wake_writer(self) -> bool:
        """Queue the empty item: the transport's writer sends a keepalive for it.

        Not a message: no metrics, no idle-timer reset.  Returns False when the
        outbound buffer is full (the writer is busy, which keeps the line alive anyway).
        """
        try:
            self._outbound_send.send_nowait(_WAKE)
        except (trio.WouldBlock, trio.ClosedResourceError, trio.BrokenResourceError):
            return False
        self._wake()
        return True


SessionHandler = Callable[[Session], Awaitable[None]]
"""The server layer: runs for the session's lifetime, reading ``session.incoming``."""


class SessionClaims(Protocol):
    """Where a worker records the sessions it owns, when several workers share them (a broker)."""

    session_id_prefix: str
    """What the ids of the sessions claimed here start with (the owner's id and a ``.``, or ``""``)."""

    async def claim(self, session_id: str) -> bool:
        """Own ``session_id``: False at the cluster-wide cap; raises when the broker does not answer."""
        ...

    def release(self, session_id: str) -> None:
        """The session ended: forget it (soon; never blocks)."""
        ...


class SessionRegistry(Protocol):
    """Where a message for a session id is delivered.  In-process by default; a broker can
    implement it so that a POST landing on any worker reaches the worker holding the stream.

    ``open``/``close`` are called by the worker that hosts the session (its stream
    side keeps the local :class:`Session`); ``deliver`` is all the intake side
    ever calls, and it answers a :class:`Delivery`, never a session.  An unknown
    session and a session of another principal both answer :attr:`Delivery.GONE`.
    """

    def open(self, session: Session) -> None: ...

    def close(self, session: Session) -> None: ...

    def count(self) -> int: ...

    async def deliver(self, session_id: str, principal: str | None, incoming: Incoming | InvalidMessage) -> Delivery: ...


class LocalSessionRegistry:
    """Sessions of this process, in a dict."""

    def __init__(self) -> None:
        self._sessions: dict[str, Session] = {}

    def open(self, session: Session) -> None:
        if session.id in self._sessions:
            raise ValueError(f"duplicate session id {session.id}")
        self._sessions[session.id] = session

    def close(self, session: Session) -> None:
        if self._sessions.get(session.id) is session:
            del self._sessions[session.id]

    def count(self) -> int:
        return len(self._sessions)

    async def deliver(self, session_id: str, principal: str | None, incoming: Incoming | InvalidMessage) -> Delivery:
        session = self._sessions.get(session_id)
        if session is None or session.principal != principal:
            return Delivery.GONE
        return await session.deliver(incoming)


FD_RESERVE: Final = 64
"""Descriptors kept for everything but streams: listening sockets, log files, imports, probes."""

FD_TRANSIENT_MAX: Final = 1024
"""At most this many descriptors are kept for POSTs and other short connections (see :func:`session_cap`)."""


def session_cap(max_sessions: int | None, open_files_limit: int | None) -> int | None:
    """How many sessions this process can hold: ``max_sessions``, and what the open-files limit leaves.

    Each stream holds a descriptor (its connection) for its whole life, and
    every POST needs one while it is answered.  Of what is left after
    :data:`FD_RESERVE`, half is kept for POSTs and other connections, but
    never more than :data:`FD_TRANSIENT_MAX` (a POST holds its descriptor for
    milliseconds: at a limit of 20,000, ten thousand of them would wait for
    requests that never come at once); streams get the rest.  A stream over
    the cap gets ``503`` with ``Retry-After`` (and its connection closed)
    instead of an ``accept`` that fails with ``EMFILE`` and no answer at all.
    ``open_files_limit`` ``None`` means unlimited.
    """
    if open_files_limit is None:
        return max_sessions
    available = open_files_limit - FD_RESERVE
    by_files = max(1, available - min(available // 2, FD_TRANSIENT_MAX))
    return by_files if max_sessions is None else min(max_sessions, by_files)


def open_files_limit() -> int | None:
    """The soft ``RLIMIT_NOFILE`` of this process (``None``: unlimited or unknown)."""
    try:
        import resource
    except ImportError:  # pragma: no cover -- not on POSIX
        return None
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return None if soft == resource.RLIM_INFINITY else soft


class SessionManager:
    """Starts, tracks and ends the sessions this process hosts; owns the nursery their tasks run in."""

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
        self.outbound_budget = OutboundBudget(self.limits.outbound_bytes_total)
        self.deliver = self.registry.deliver
        """``deliver(session_id, principal, incoming) -> Delivery``: hand a message to a session
        through the registry, wherever the session is hosted (bound directly: the POST hot path)."""
        self._draining = False
        self._nursery: trio.Nursery | None = None
        self.max_sessions = self.limits.max_sessions
        """The effective cap: ``limits.max_sessions`` lowered to what the open-files limit allows
        (:func:`session_cap`), decided when :meth:`run` starts."""
        self._local: dict[str, Session] = {}
        """Sessions hosted here: their streams are served by this process."""
        self._all_finished = trio.Event()
        self._all_finished.set()
        self.claims: SessionClaims | None = None
        """Set while the host is joined to a broker: every stateful session is claimed there first."""

    @property
    def running(self) -> bool:
        return self._nursery is not None

    @property
    def draining(self) -> bool:
        """True once :meth:`drain` or :meth:`close_all` began: new sessions are refused."""
        return self._draining

    def __len__(self) -> int:
        return len(self._local)

    def __iter__(self) -> Iterator[Session]:
        return iter(list(self._local.values()))

    def get(self, session_id: str) -> Session | None:
        """The session with this id if it is hosted here (the stream side's view; intake uses :meth:`deliver`)."""
        return self._local.get(session_id)

    @asynccontextmanager
    async def run(self) -> AsyncIterator[SessionManager]:
        """Own the nursery every session task runs in, for the duration of the block.

        On exit every remaining session is closed (their handlers cancelled)
        and waited for, so nothing outlives the block.
        """
        if self._nursery is not None:
            raise RuntimeError("SessionManager is already running")
        self._draining = False
        files = open_files_limit()
        self.max_sessions = session_cap(self.limits.max_sessions, files)
        if self.max_sessions != self.limits.max_sessions:
            log.info(
                "session cap %d (open files limit %s; max_sessions %s)",
                self.max_sessions,
                files,
                self.limits.max_sessions,
                extra={"event": "session_cap", "sessions": self.max_sessions},
            )
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                try:
                    yield self
                finally:
                    self._nursery = None
                    for session in self:
                        session.close("server shutting down")
        finally:
            self._nursery = None

    def check_admission(self) -> Refusal | None:
        """Would a new session be refused right now, and why?"""
        if self._draining:
            return Refusal.DRAINING
        limit = self.max_sessions
        if limit is not None and len(self._local) >= limit:
            return Refusal.AT_CAPACITY
        return None

    async def open_session(
        self,
        *,
        principal: str | None = None,
        headers: Mapping[str, str] | None = None,
        handler: SessionHandler | None = None,
        stateless: bool = False,
        peer: str | None = None,
    ) -> Session:
        """Register a new session and start its handler task in the manager's nursery.

        ``handler`` replaces the manager's for this session: a transport that
        shares the manager with another wraps the server layer in its own way.

        Raises :class:`SessionRefused` while draining or at ``max_sessions``, and
        ``RuntimeError`` outside :meth:`run`.
        """
        refusal = self.check_admission()
        if refusal is not None:
            raise SessionRefused(refusal)
        if self._nursery is None:
            raise RuntimeError("SessionManager is not running")
        claims = None if stateless else self.claims
        session = Session(
            new_session_id(claims.session_id_prefix if claims is not None else ""),
            principal=principal,
            headers=headers if headers is not None else _NO_HEADERS,
            limits=self.limits,
            metrics=self.metrics,
            stateless=stateless,
            budget=self.outbound_budget,
            peer=peer,
        )
        if claims is not None:
            await self._claim(claims, session.id)
        self._adopt(session)
        try:
            await self._nursery.start(self._run_session, session, handler or self.handler)
        except BaseException:
            self._forget(session)
            session._finish()
            raise
        self.metrics.sessions_opened += 1
        log.debug(
            "session %s opened",
            session.id,
            extra={"event": "session_opened", "session_id": session.id, "principal": principal},
        )
        return session

    @staticmethod
    async def _claim(claims: SessionClaims, session_id: str) -> None:
        try:
            claimed = await claims.claim(session_id)
        except Exception as error:
            log.debug(  # the link logs the outage once; this would repeat it for every refused session
                "session refused: the broker did not answer (%s)",
                error,
                extra={"event": "session_unclaimed", "session_id": session_id},
            )
            raise SessionRefused(Refusal.BROKER_UNAVAILABLE) from None
        if not claimed:
            raise SessionRefused(Refusal.AT_CAPACITY)

    def _adopt(self, session: Session) -> None:
        self.registry.open(session)
        self._local[session.id] = session
        if self._all_finished.is_set():
            self._all_finished = trio.Event()

    def _forget(self, session: Session) -> None:
        self.registry.close(session)
        if self.claims is not None and not session.stateless:
            self.claims.release(session.id)
        if self._local.get(session.id) is session:
            del self._local[session.id]
        if not self._local:
            self._all_finished.set()

    async def _run_session(
        self, session: Session, handler: SessionHandler, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """The session task: the handler inside the session's scope and error boundary."""
        try:
            with session.cancel_scope:
                task_status.started()
                # The status object references the nursery trio opened for the start-up
                # phase; this frame would keep it (~1 KB) alive as long as the session.
                del task_status
                try:
                    await handler(session)
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
            if session.cancel_scope.cancelled_caught and not session.closed:
                # Nobody asked it to close: its own deadline, the idle timeout, expired.
                session.close("idle timeout")
                log.info(
                    "session %s: idle for %.0fs; closing it",
                    session.id,
                    self.limits.idle_timeout,
                    extra={"event": "session_idle", "session_id": session.id},
                )
        finally:
            reason = session.close_reason or ("drained" if session.draining else "handler returned")
            self._forget(session)
            session._finish()
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

    async def close_all(self, reason: str = "server shutting down") -> None:
        """Refuse new sessions, close every session at once and wait (bounded) for their tasks."""
        self._draining = True
        async with trio.open_nursery() as nursery:
            for session in self:
                nursery.start_soon(self.close_session, session, reason)

    async def drain(self, grace_period: float) -> None:
        """Stop taking sessions, let every session finish its accepted work, then close the rest.

        New sessions are refused at once.  Each session stops taking messages and
        its handler sees the end of ``incoming``; a handler that returns within
        ``grace_period`` seconds ends its stream cleanly.  Whatever is still
        running after that is cancelled.  Returns once every session task is gone (or
        ``close_timeout`` later, for handlers that ignore cancellation).
        """
        self._draining = True
        for session in self:
            session.drain()
        with trio.move_on_after(grace_period):
            await self._all_finished.wait()
        leftovers = list(self)
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
