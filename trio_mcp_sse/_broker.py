"""Sessions across worker processes and hosts: ownership, and forwarding to the owner.

Theory of operation
-------------------
A session lives in the memory of the worker that opened it (its *owner*): the
session task, its channels, the streams of its client.  Several workers (the
processes of one ``serve --workers N``, or several hosts behind a load
balancer) join one *broker*, a shared place where

* each worker has a mailbox (its id), and a liveness key it refreshes;
* each session id names its owner, under a key with a time to live that the
  owner refreshes while the session lives (one supervised task per worker
  refreshes them all, :meth:`BrokerLink._supervise`);
* the number of sessions across all workers is counted, for a cluster-wide cap.

A request addressed to a session (an HTTP+SSE POST naming its ``session_id``,
a Streamable HTTP request carrying ``Mcp-Session-Id``) that reaches a worker
which does not hold the session is *forwarded*: the receiving worker reads
the body, then sends the whole HTTP exchange (scope, headers, body) to the
owner's mailbox.  The session's id names its owner (``<worker id>.<random>``,
:func:`session_owner`, as task ids do), so the forward is one send to that
mailbox with no lookup; the broker's :meth:`Bus.route` (the ownership key,
the owner's liveness) decides only when nobody reads that mailbox, or for an
id that names no worker.  The owner checks, as for a direct request, that it
holds the session: a forged id gets its unknown-session answer.  The owner
runs it through the same transport code a local request would take
(admission, authentication, the session's principal, the intake) and every
ASGI message of its answer travels back: a ``202`` once the owner's session
accepted the message, or a Streamable HTTP response stream with the request's
progress, the server's requests to the client and the result.  The receiving
worker replays them to its client.  The owner sends as few frames as it can:
a small answer's start and body go as one frame, which also acknowledges the
request, and the part of an answer that is not its end is held for up to
:data:`_LINGER` (or :data:`_HOLD_BYTES`), so that a stream that ends soon
goes back whole.  Forwarding at the HTTP exchange keeps one behaviour for
every kind of request (POST, the standalone GET stream, ``Last-Event-ID``
resumption, DELETE) with no transport-specific relaying, and the event store
stays with the session.

Tasks (the tasks extension of 2026-07-28) live with the worker that created
them, too.  Their ids name it (:func:`task_id_prefix`: ``<worker id>.<random>``),
so a task's request (``Mcp-Name`` carries the id) that reaches another worker
is forwarded the same way, straight to the named worker's mailbox
(:meth:`BrokerLink.forward_to`): no lookup, and no broker write per task.

Delivery semantics: a message is answered ``202`` only by its owner, after
its session queued it, so nothing a client was told is accepted is lost while
its owner lives.  A forward that did not reach a live owner is answered
``404`` (no owner: the session is gone) or ``503`` (the broker or the owner
did not answer in time: the message may or may not have been taken; a
client's retry can deliver it twice, as with any HTTP request that failed
without an answer).  An owner that dies takes its sessions with it: requests
for them get ``404`` within the liveness key's lifetime (immediately when its
connection to the broker closed), never a hang.

The wire format of a forwarded exchange (:func:`encode_frame`) is a JSON header
line and raw body bytes; frames are defined here, once, for every broker.
A :class:`Bus` is one worker's connection to a broker: :class:`MemoryBroker`
(workers in one process, for tests and embedding) and
:class:`~trio_mcp_sse.broker.RedisBroker` implement it.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import logging
import math
import os
import re
import secrets
from collections import Counter, deque
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any, Final, NamedTuple, Protocol

import orjson
import trio

from ._http import (
    DISCONNECT_NOTICE,
    BodyLimits,
    ClientGone,
    DisconnectNotice,
    Message,
    Outcome,
    Receive,
    Scope,
    Send,
    read_body,
    send_outcome,
)
from ._logs import REFUSAL_LINES_PER_WINDOW, REFUSAL_WINDOW, RateLimiter

__all__ = [
    "WORKER_TOKEN",
    "Broker",
    "BrokerLink",
    "BrokerSettings",
    "BrokerUnavailable",
    "Bus",
    "ForwardTarget",
    "MalformedFrame",
    "MemoryBroker",
    "RouteResult",
    "decode_frame",
    "encode_frame",
    "scope_from_wire",
    "scope_to_wire",
    "session_owner",
    "task_id_prefix",
    "task_owner",
]

log = logging.getLogger("trio_mcp_sse")

class BrokerUnavailable(Exception):
    """The broker did not answer (unreachable, or slower than ``BrokerSettings.operation_timeout``)."""


@dataclass(frozen=True)
class BrokerSettings:
    """Timings and names every worker of one deployment must agree on."""

    prefix: str = "mcp"
    """Every key and mailbox name starts with ``{prefix}:``; one Redis database can serve several deployments."""
    session_ttl: float = 30.0
    """Lifetime of a session's ownership key; its owner refreshes it every third of that."""
    worker_ttl: float = 3.0
    """Lifetime of a worker's liveness key: how long after its death (without a closed connection) its
    sessions still answer ``503`` before ``404``."""
    heartbeat_interval: float = 1.0
    """How often a worker refreshes its liveness key, releases closed sessions and checks the peers of its
    forwarded exchanges."""
    operation_timeout: float = 2.0
    """Bound on every broker operation; slower counts as unavailable (``503``)."""
    ack_timeout: float = 3.0
    """How long a forwarded request waits for the owner to say it took it before ``503``."""
    max_sessions: int | None = None
    """Sessions across all workers (``None``: only each worker's own cap)."""
    exchange_buffer: int = 256
    """Frames of one forwarded answer buffered for a client that reads slower than the owner writes;
    past that the forwarded stream is dropped (its client reconnects and resumes)."""

    def __post_init__(self) -> None:
        if not self.prefix or any(c in self.prefix for c in " \n\r"):
            raise ValueError(f"prefix must be a non-empty word: {self.prefix!r}")
        for name in ("session_ttl", "worker_ttl", "heartbeat_interval", "operation_timeout", "ack_timeout"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0")
        if self.worker_ttl <= self.heartbeat_interval:
            raise ValueError("worker_ttl must be longer than heartbeat_interval")
        if self.session_ttl <= 3 * self.heartbeat_interval:
            raise ValueError("session_ttl must be longer than three heartbeat intervals")
        if self.max_sessions is not None and self.max_sessions < 1:
            raise ValueError("max_sessions must be >= 1 or None")
        if self.exchange_buffer < 1:
            raise ValueError("exchange_buffer must be >= 1")


@dataclass(frozen=True)
class RouteResult:
    """Where :meth:`Bus.route` sent a frame.  ``owner`` None: no session with that id (or its owner is dead)."""

    owner: str | None
    reached: bool
    """False when the owner is alive by its liveness key but its mailbox had no reader (reconnecting)."""


class Bus(Protocol):
    """One worker's connection to a broker.  Every method raises :class:`BrokerUnavailable` on failure."""

    worker_id: str

    def frames(self) -> trio.abc.ReceiveChannel[bytes]:
        """Frames sent to this worker's mailbox."""
        ...

    async def claim(self, session_id: str) -> bool:
        """Record this worker as the session's owner; False when the cluster-wide cap is reached."""
        ...

    async def route(self, session_id: str, frame: bytes) -> RouteResult:
        """Send ``frame`` to the mailbox of the session's owner, in one step with the lookup."""
        ...

    async def send(self, worker_id: str, frame: bytes) -> bool:
        """Send ``frame`` to a worker's mailbox; False when nobody reads it."""
        ...

    # Optional (a Bus without it gets ``send``, awaited, in its place):
    #
    # async def post(self, worker_id: str, frame: bytes,
    #                undelivered: Callable[[BrokerUnavailable | None], None]) -> None:
    #     Send ``frame`` to a worker's mailbox (or queue it to be sent: it should not wait) without
    #     waiting to hear that it was read.  Later, and at most once, ``undelivered(None)`` if nobody
    #     read that mailbox, or ``undelivered(error)`` if the broker failed before it could tell;
    #     nothing when it was read.  Raises BrokerUnavailable (and never calls ``undelivered``) when
    #     the frame could not be sent.

    async def heartbeat(self) -> tuple[bool, int]:
        """Refresh this worker's liveness key.  Returns whether it was still there (False: it expired or the
        broker lost it -- re-register everything) and the number of sessions across all workers."""
        ...

    async def refresh(self, session_ids: Collection[str], released: Collection[str]) -> int:
        """Refresh ownership of ``session_ids``, forget ``released``; returns the cluster's session count."""
        ...

    async def alive(self, worker_ids: Collection[str]) -> set[str]:
        """Which of ``worker_ids`` have a live liveness key."""
        ...


class Broker(Protocol):
    """Something workers join: :meth:`connect` opens one worker's :class:`Bus`."""

    settings: BrokerSettings

    def connect(self, worker_id: str) -> AbstractAsyncContextManager[Bus]: ...


# -- the wire format ------------------------------------------------------------------------------
_SEPARATOR: Final = b"\n"


def encode_frame(meta: Mapping[str, Any], body: bytes = b"") -> bytes:
    """A JSON header line, then the body bytes as they are (no base64: bodies are most of a frame)."""
    return orjson.dumps(meta) + _SEPARATOR + body


def decode_frame(frame: bytes) -> tuple[dict[str, Any], bytes]:
    """The inverse of :func:`encode_frame`.  Raises ``ValueError`` for anything else."""
    head, separator, body = frame.partition(_SEPARATOR)
    if not separator:
        raise ValueError("frame has no header line")
    meta = orjson.loads(head)
    if not isinstance(meta, dict) or not isinstance(meta.get("k"), str):
        raise ValueError("frame header is not an object with a kind")
    return meta, body


_SCOPE_TEXT: Final = ("http_version", "method", "scheme", "path", "root_path")


def scope_to_wire(scope: Scope) -> dict[str, Any]:
    """What the owner needs of an HTTP scope to answer it as if it had arrived there.

    Bytes are carried as latin-1 text (a lossless byte-to-char map).  The
    client address is the one the receiving worker settled on, trusted
    forwarded headers already applied.
    """
    client = scope.get("client")
    server = scope.get("server")
    return {
        **{key: scope.get(key, "") for key in _SCOPE_TEXT},
        "raw_path": (scope.get("raw_path") or scope["path"].encode("utf-8")).decode("latin-1"),
        "query_string": scope.get("query_string", b"").decode("latin-1"),
        "headers": [[key.decode("latin-1"), value.decode("latin-1")] for key, value in scope["headers"]],
        "client": list(client) if client else None,
        "server": list(server) if server else None,
    }


def scope_from_wire(wire: Mapping[str, Any]) -> Scope:
    client = wire.get("client")
    server = wire.get("server")
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        **{key: str(wire[key]) for key in _SCOPE_TEXT},
        "raw_path": str(wire["raw_path"]).encode("latin-1"),
        "query_string": str(wire["query_string"]).encode("latin-1"),
        "headers": [(str(key).encode("latin-1"), str(value).encode("latin-1")) for key, value in wire["headers"]],
        "client": (str(client[0]), int(client[1])) if client else None,
        "server": (str(server[0]), server[1]) if server else None,
        "extensions": {},
    }


WORKER_TOKEN: Final = r"[0-9A-Za-z_-]{1,64}"
"""A worker id that can stand in a task or session id (ours are a pid and 12 hex digits): no ``.``,
safe in a header and in a URL's query."""
_WORKER_TOKEN: Final = re.compile(WORKER_TOKEN)


def task_id_prefix(worker_id: str) -> str:
    """What the ids of the tasks and sessions a worker creates start with: its id and a ``.`` (``""`` for an
    id that cannot).

    The rest of a task id is ``secrets.token_urlsafe`` text, and the rest of a
    session id 32 hex digits, neither with a ``.``, so :func:`task_owner` and
    :func:`session_owner` read the owner back unambiguously.
    """
    return f"{worker_id}." if _WORKER_TOKEN.fullmatch(worker_id) else ""


def task_owner(task_id: str | None) -> str | None:
    """The worker a task id names as the one holding the task (see :func:`task_id_prefix`), if it names one."""
    if task_id is None:
        return None
    owner, dot, rest = task_id.partition(".")
    if not dot or not rest or _WORKER_TOKEN.fullmatch(owner) is None:
        return None
    return owner


def session_owner(session_id: str) -> str | None:
    """The worker a session id names as its owner (``<worker id>.<32 hex digits>``), if it names one.

    Only a hint: a client may send any id, so the worker it names still checks
    that it holds the session, and an id naming no worker (one issued without a
    broker, or by an older release) is looked up in the broker.
    """
    owner, dot, rest = session_id.partition(".")
    if not dot or not rest or _WORKER_TOKEN.fullmatch(owner) is None:
        return None
    return owner


def _headers_to_wire(headers: Any) -> list[list[str]]:
    return [[bytes(key).decode("latin-1"), bytes(value).decode("latin-1")] for key, value in headers]


# Frame kinds.
_REQUEST: Final = "q"  # receiver -> owner: scope + body
_ACK: Final = "a"  # owner -> receiver: taken, running
_RESPONSE: Final = "r"  # owner -> receiver: status + headers + first body chunk
_BODY: Final = "b"  # owner -> receiver: a further body chunk
_FAILED: Final = "f"  # owner -> receiver: the owner could not answer
_DISCONNECT: Final = "d"  # receiver -> owner: the client went away
_KINDS: Final = frozenset({_REQUEST, _ACK, _RESPONSE, _BODY, _FAILED, _DISCONNECT})


# -- what arrives in a mailbox: checked whole before anything acts on it ----------------------------
class MalformedFrame(ValueError):
    """A frame that is not one this package sends; ``reason`` says why in a few words (never its contents)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _Request(NamedTuple):
    exchange: str
    reply_to: str
    scope: Scope
    body: bytes


class _Disconnect(NamedTuple):
    exchange: str
    reply_to: str


RawHeaderPairs = tuple[tuple[bytes, bytes], ...]


class _Answer(NamedTuple):
    """A frame of an owner's answer (acknowledgement, response start, body chunk, failure), ready to replay."""

    exchange: str
    kind: str
    status: int
    headers: RawHeaderPairs
    body: bytes
    more: bool


_MAX_ID: Final = 256
"""Longest exchange or worker id a frame may carry (ours are a counter, and a pid with 12 hex digits)."""


def _an_id(value: Any, reason: str) -> str:
    if not isinstance(value, str) or not 0 < len(value) <= _MAX_ID:
        raise MalformedFrame(reason)
    return value


def _is_pair_of_text(value: Any) -> bool:
    return (
        isinstance(value, list)
        and len(value) == 2
        and isinstance(value[0], str)
        and isinstance(value[1], str)
    )


def _is_address(value: Any, *, port_required: bool) -> bool:
    if value is None:
        return True
    if not isinstance(value, list) or len(value) != 2 or not isinstance(value[0], str):
        return False
    port = value[1]
    return type(port) is int or (port is None and not port_required)


def _checked_scope(wire: Any) -> Scope:
    """:func:`scope_from_wire` of a request frame's scope, every field of the type ``scope_to_wire`` gives it.

    One pass over the headers checks and converts them (run for every
    forwarded request).
    """
    if not isinstance(wire, dict):
        raise MalformedFrame("request without a scope")
    try:
        text = [wire[key] for key in _SCOPE_TEXT]
        raw_path, query_string, pairs = wire["raw_path"], wire["query_string"], wire["headers"]
        client, server = wire.get("client"), wire.get("server")
        if (
            all(type(value) is str for value in text)
            and type(raw_path) is str
            and type(query_string) is str
            and type(pairs) is list
            and _is_address(client, port_required=True)
            and _is_address(server, port_required=False)
        ):
            headers = []
            for pair in pairs:
                if type(pair) is not list or len(pair) != 2:
                    raise ValueError
                key, value = pair
                if type(key) is not str or type(value) is not str:
                    raise ValueError
                headers.append((key.encode("latin-1"), value.encode("latin-1")))
            return {
                "type": "http",
                "asgi": {"version": "3.0", "spec_version": "2.3"},
                **dict(zip(_SCOPE_TEXT, text, strict=True)),
                "raw_path": raw_path.encode("latin-1"),
                "query_string": query_string.encode("latin-1"),
                "headers": headers,
                "client": (client[0], client[1]) if client else None,
                "server": (server[0], server[1]) if server else None,
                "extensions": {},
            }
    except (KeyError, ValueError):  # a missing field; text that is not latin-1 (UnicodeEncodeError)
        pass
    raise MalformedFrame("request scope is not an HTTP request's")


def _raw_headers(wire: Any) -> RawHeaderPairs:
    if not isinstance(wire, list) or not all(_is_pair_of_text(pair) for pair in wire):
        raise MalformedFrame("response headers are not pairs of text")
    try:
        return tuple((key.encode("latin-1"), value.encode("latin-1")) for key, value in wire)
    except UnicodeEncodeError:
        raise MalformedFrame("response headers are not latin-1") from None


def _more(meta: Mapping[str, Any]) -> bool:
    more = meta.get("m", False)
    if not isinstance(more, bool):
        raise MalformedFrame("more-body flag is not a boolean")
    return more


def _parse_frame(frame: bytes) -> _Request | _Disconnect | _Answer:
    """What a mailbox frame says, every field checked; :class:`MalformedFrame` for anything we never send.

    Run on every frame before anything acts on it: a frame is trusted (see
    docs/scaling.md) but not assumed well-formed, so that nothing further on
    (an exchange's relay, a forwarded request's task) meets a bad one.
    """
    head, separator, body = frame.partition(_SEPARATOR)
    if not separator:
        raise MalformedFrame("no header line")
    try:
        meta = orjson.loads(head)
    except orjson.JSONDecodeError:
        raise MalformedFrame("header is not JSON") from None
    if not isinstance(meta, dict):
        raise MalformedFrame("header is not a JSON object")
    kind = meta.get("k")
    if not isinstance(kind, str) or kind not in _KINDS:
        raise MalformedFrame("unknown kind")
    exchange = _an_id(meta.get("x"), "no exchange id")
    if kind == _REQUEST:
        return _Request(
            exchange,
            _an_id(meta.get("r"), "request without a reply-to worker"),
            _checked_scope(meta.get("s")),
            body,
        )
    if kind == _DISCONNECT:
        return _Disconnect(exchange, _an_id(meta.get("r"), "disconnect without a worker"))
    if kind == _RESPONSE:
        status = meta.get("st")
        if type(status) is not int or not 100 <= status <= 599:
            raise MalformedFrame("response without a status")
        return _Answer(exchange, kind, status, _raw_headers(meta.get("h")), body, _more(meta))
    return _Answer(exchange, kind, 0, (), body, _more(meta) if kind == _BODY else False)


def _is_event_stream(headers: Any) -> bool:
    """Is this answer's content type ``text/event-stream`` (the answer may end at any event)?"""
    return any(name == b"content-type" and value.startswith(b"text/event-stream") for name, value in headers)


def _has_event_data(chunk: bytes) -> bool:
    """Does this part of an event stream carry an event with data, or anything else than ``id``, ``retry``
    and ``event`` fields, comments and blank lines?  (An event without data is not dispatched to the client:
    it only sets the last event id, or the retry interval.)"""
    at, size = 0, len(chunk)
    while at < size:
        end = chunk.find(b"\n", at)
        if end < 0:
            end = size
        line = chunk[at:end].rstrip(b"\r")
        at = end + 1
        if not line or line[:1] == b":":
            continue
        name, _, value = line.partition(b":")
        if name in (b"id", b"retry", b"event"):
            continue
        if name == b"data" and value in (b"", b" "):
            continue
        return True
    return False


class ForwardTarget(Protocol):
    """A transport the owner can run a forwarded exchange through (its endpoints, no re-forwarding)."""

    async def serve_forwarded(self, path: str, scope: Scope, receive: Receive, send: Send) -> bool: ...


_ACK_DELAY: Final = 0.2
"""Seconds an owner waits for the answer to start before it acknowledges a forwarded request apart."""

_LINGER: Final = 0.005
"""Seconds an owner holds the part of an answer that is not its end (a response's headers, events) for what
follows, so that what comes together goes back as one frame, one ``PUBLISH``; a stream that goes on reaches
its client at most this much later.  Events with no data (a priming event, a keep-alive comment) are held
up to the acknowledgement's delay instead: the priming event of a quick call's stream and its result go
back as one frame."""

_HOLD_BYTES: Final = 65536
"""Bytes of an answer held at most: more is sent at once (and the transport waits for it)."""

_ACK_TIMER: Final = 0
_FLUSH_TIMER: Final = 1

# How a forwarded exchange can end before its answer is complete (pushed into its channel, or
# found out by the receiver): the metric's reason, and the answer if none had started.
_OWNER_GONE: Final = b"owner gone"
_BROKER_LOST: Final = b"broker lost"
_OWNER_FAILED: Final = b"owner failed"
_CLIENT_TOO_SLOW: Final = b"client too slow"
_ENDINGS: Final = {
    _OWNER_GONE: ("owner_gone", Outcome.UNKNOWN_SESSION),  # the session died with its worker
    _BROKER_LOST: ("broker_unavailable", Outcome.BROKER_UNAVAILABLE),  # frames may have been lost meanwhile
    _OWNER_FAILED: ("owner_failed", Outcome.WORKER_UNAVAILABLE),
    _CLIENT_TOO_SLOW: ("client_too_slow", Outcome.SESSION_BUSY),
}


class _Outgoing:
    """A request this worker forwarded, waiting for its owner's answer (its frames, or one of ``_ENDINGS``).

    The frames wait in a bounded queue of their own (one per forwarded
    request, so lighter than a memory channel): the mailbox reader pushes,
    the request's task takes them in order.  Overflowing closes it: what is
    queued is still taken, then it ends.
    """

    __slots__ = ("_buffer", "_closed", "_frames", "_lot", "acked", "overflowed", "owner", "unread")

    def __init__(self, buffer: int) -> None:
        self._buffer = buffer
        self._frames: deque[bytes | _Answer] = deque()
        self._lot = trio.lowlevel.ParkingLot()
        self._closed = False
        self.acked = trio.Event()
        self.owner: str | None = None
        self.overflowed = False
        self.unread = False
        """The request was posted to a mailbox nobody read: it is to be sent again, through a lookup."""

    def undelivered(self, error: BrokerUnavailable | None) -> None:
        """The broker's word on the posted request, when it did not reach its owner (or may not have)."""
        if self.acked.is_set():
            return  # answered already: it did reach it
        if error is None:
            self.unread = True
            self.acked.set()
        else:
            self.push(_BROKER_LOST)

    def retry(self) -> None:
        """Wait anew for the owner to take the request (sent again)."""
        self.unread = False
        self.acked = trio.Event()

    def push(self, frame: bytes | _Answer) -> None:
        if isinstance(frame, bytes):
            self.acked.set()  # an ending also ends the wait for the owner to take the request
        if self._closed:
            return
        if len(self._frames) >= self._buffer:
            self.overflowed = self._closed = True
        else:
            self._frames.append(frame)
        if self._lot:
            self._lot.unpark_all()

    def receive_nowait(self) -> bytes | _Answer | None:
        """The next frame if one is here (None if not)."""
        return self._frames.popleft() if self._frames else None

    async def receive(self) -> bytes | _Answer:
        """The next frame; ``trio.EndOfChannel`` once the queue was closed and emptied."""
        while not self._frames:
            if self._closed:
                raise trio.EndOfChannel
            await self._lot.park()
        return self._frames.popleft()


class _Incoming:
    """An exchange this worker runs for another worker's client, and what of its answer is held."""

    __slots__ = (
        "answered", "disconnected", "ended", "event_stream", "exchange", "finished", "flush_at", "flushing",
        "held", "held_bytes", "notice", "reply_to", "start",
    )  # fmt: skip

    def __init__(self, exchange: str, reply_to: str) -> None:
        self.exchange = exchange
        self.reply_to = reply_to
        self.disconnected = trio.Event()
        self.notice = DisconnectNotice()
        """In the exchange's scope: a response waiting for its next message is interrupted by
        :meth:`disconnect` rather than waiting in ``receive`` under a cancel scope."""
        self.answered = False
        """A frame of the answer went out (the first also acknowledges the request)."""
        self.finished = False
        """The answer's end was given to :meth:`BrokerLink._flush`: anything sent after it is ignored."""
        self.ended = False
        """The exchange's task returned: a timer still set for it does nothing."""
        self.start: Message | None = None
        self.held: list[bytes] = []
        self.held_bytes = 0
        self.event_stream = False
        self.flush_at = math.inf
        """When what is held goes out at the latest (a timer is set for it)."""
        self.flushing: trio.Event | None = None

    def disconnect(self) -> None:
        """The receiving worker's client is gone (or the exchange's frames can no longer reach it)."""
        self.disconnected.set()
        self.notice.fire()


class BrokerLink:
    """One worker's membership of a broker: claims its sessions, forwards requests, runs forwarded ones.

    Created by the :class:`~trio_mcp_sse._host.SessionHost` when it runs (its
    lifespan), and run by it: :meth:`run` owns the nursery of every task this
    needs -- the mailbox reader, the supervisor (liveness, ownership refresh,
    releases, peers' liveness), the timers of the exchanges it answers
    (acknowledgements, held answers) and each of those exchanges.
    """

    def __init__(
        self,
        broker: Broker,
        *,
        local_sessions: Callable[[], Collection[str]],
        metrics: Any,
        worker_id: str | None = None,
    ) -> None:
        self.broker = broker
        self.settings = broker.settings
        self.worker_id = worker_id or f"{os.getpid()}-{secrets.token_hex(6)}"
        self.session_id_prefix = task_id_prefix(self.worker_id)
        """What the ids of the sessions this worker opens start with: its id, so that a request for one
        that reaches another worker is sent straight to this one's mailbox (``""``: an id that cannot)."""
        self._ack_delay = min(self.settings.ack_timeout / 4, _ACK_DELAY)
        self._local_sessions = local_sessions
        self.metrics = metrics
        self._targets: list[ForwardTarget] = []
        self._bus: Bus | None = None
        self._nursery: trio.Nursery | None = None
        self._outgoing: dict[str, _Outgoing] = {}
        self._incoming: dict[tuple[str, str], _Incoming] = {}
        self._released: set[str] = set()
        self._ids = itertools.count()
        self._timers: list[tuple[float, int, int, _Incoming]] = []
        self._timer_ids = itertools.count()
        self._timer_scope: trio.CancelScope | None = None
        self._bad_frames = RateLimiter(REFUSAL_LINES_PER_WINDOW, REFUSAL_WINDOW)
        self._last_error: BrokerUnavailable | None = None
        self.up = False
        """Did the last broker operation succeed?  While it did not, the worker can open no session,
        so ``/readyz`` answers ``503`` (and ``mcp_broker_up`` is 0)."""
        self.joined = False
        """Has this worker reached the broker since it started?  (Its first success logs "joined".)"""
        self.cluster_sessions = 0
        """Sessions across all workers, as of the last refresh."""

    def add_target(self, target: ForwardTarget) -> None:
        if target not in self._targets:
            self._targets.append(target)

    # -- running --------------------------------------------------------------------------------
    @asynccontextmanager
    async def run(self) -> AsyncIterator[BrokerLink]:
        """Join the broker for the duration of the block (a worker that cannot reach it still serves locally).

        Entering takes the first heartbeat (bounded by ``operation_timeout``,
        after the broker's own bounded connect): a worker that cannot reach its
        broker says so at start-up with a warning, and keeps trying every
        heartbeat; it logs that it joined once it has.
        """
        async with self.broker.connect(self.worker_id) as bus, trio.open_nursery() as nursery:
            self._bus = bus
            self._nursery = nursery
            nursery.start_soon(self._read_mailbox, bus, name="broker mailbox")
            nursery.start_soon(self._run_timers, name="broker exchange timers")
            await nursery.start(self._supervise, bus, name="broker supervisor")
            if not self.joined:
                log.warning(
                    "worker %s cannot reach the session broker %r (%s): not ready (readiness probe 503), and new "
                    "sessions and forwarded requests get 503, until it answers; retrying every %gs",
                    self.worker_id,
                    self.broker,
                    str(self._last_error or "no answer")[:200],
                    self.settings.heartbeat_interval,
                    extra={"event": "broker_down", "worker": self.worker_id},
                )
            try:
                yield self
            finally:
                nursery.cancel_scope.cancel()
                await self.release_closed()
                self._nursery = None
                self._bus = None
                for outgoing in self._outgoing.values():
                    outgoing.push(_OWNER_GONE)

    async def release_closed(self) -> None:
        """Give the sessions closed since the last heartbeat back now, bounded by ``operation_timeout``.

        A worker that stops calls this once its sessions are closed and while
        it is still fully running, so that requests for them are answered
        ``404`` at once rather than ``503`` until its liveness key expires:
        under hypercorn the lifespan is cancelled as soon as the application
        reports its shutdown complete, and that cancellation reaches the Redis
        client's own tasks, which a shielded call made later cannot use.
        """
        bus = self._bus
        if bus is None or not self._released:
            return
        released, self._released = self._released, set()
        with trio.CancelScope(shield=True):
            try:
                await self._call(bus.refresh([], released))
            except BrokerUnavailable:
                self._released |= released  # their keys expire with session_ttl

    async def _call(self, operation: Awaitable[Any]) -> Any:
        """One broker operation, bounded; any failure is :class:`BrokerUnavailable`."""
        with trio.move_on_after(self.settings.operation_timeout) as scope:
            try:
                result = await operation
            except BrokerUnavailable:
                self._mark(up=False)
                raise
            self._mark(up=True)
            return result
        assert scope.cancelled_caught
        self._mark(up=False)
        raise BrokerUnavailable(f"no answer within {self.settings.operation_timeout:g}s")

    def _mark(self, *, up: bool) -> None:
        if up == self.up:
            return
        self.up = up
        if up and not self.joined:
            self.joined = True
            log.info(
                "worker %s joined the session broker %r",
                self.worker_id,
                self.broker,
                extra={"event": "broker_joined", "worker": self.worker_id},
            )
            return
        if up:
            log.info("session broker reachable", extra={"event": "broker_up", "worker": self.worker_id})
            return
        log.warning(
            "session broker unreachable: new sessions and forwarded requests get 503 until it is back",
            extra={"event": "broker_down", "worker": self.worker_id},
        )
        # Frames of the exchanges in flight may be lost with it: end them now (their clients
        # retry or resume) rather than wait for an end that may never arrive.
        for outgoing in self._outgoing.values():
            outgoing.push(_BROKER_LOST)
        for incoming in self._incoming.values():
            incoming.disconnect()

    # -- sessions -------------------------------------------------------------------------------
    async def claim(self, session_id: str) -> bool:
        """Own a new session (False: the cluster is at its cap).  Raises :class:`BrokerUnavailable`."""
        bus = self._bus
        if bus is None:
            raise BrokerUnavailable("not connected")
        claimed: bool = await self._call(bus.claim(session_id))
        return claimed

    def release(self, session_id: str) -> None:
        """Forget a closed session at the next heartbeat (its key would expire anyway)."""
        if self._bus is not None:
            self._released.add(session_id)

    async def _supervise(
        self, bus: Bus, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Liveness, ownership refresh, releases and peers' liveness: one task for all sessions.

        Started once its first beat has succeeded or failed (each operation bounded).
        """
        settings = self.settings
        refresh_every = max(1, math.floor(settings.session_ttl / 3 / settings.heartbeat_interval))
        beat = 0
        while True:
            try:
                fresh, self.cluster_sessions = await self._call(bus.heartbeat())
                if not fresh or beat % refresh_every == 0 or self._released:
                    released, self._released = self._released, set()
                    try:
                        self.cluster_sessions = await self._call(bus.refresh(list(self._local_sessions()), released))
                    except BrokerUnavailable:
                        self._released |= released
                        raise
                if self._outgoing or self._incoming:
                    await self._end_exchanges_of_dead_peers(bus)
            except BrokerUnavailable as error:
                self._last_error = (
                    error  # logged by _mark, or at start-up by run; retried at the next beat
                )
            if beat == 0:
                task_status.started()
            beat += 1
            await trio.sleep(settings.heartbeat_interval)

    async def _end_exchanges_of_dead_peers(self, bus: Bus) -> None:
        peers = {o.owner for o in self._outgoing.values() if o.owner is not None}
        peers |= {i.reply_to for i in self._incoming.values()}
        peers.discard(self.worker_id)
        if not peers:
            return
        alive: set[str] = await self._call(bus.alive(peers))
        dead = peers - alive
        if not dead:
            return
        for outgoing in self._outgoing.values():
            if outgoing.owner in dead:
                outgoing.push(_OWNER_GONE)
        for incoming in self._incoming.values():
            if incoming.reply_to in dead:
                incoming.disconnect()

    # -- the receiving side -----------------------------------------------------------------------
    async def forward(
        self,
        session_id: str,
        scope: Scope,
        receive: Receive,
        send: Send,
        *,
        body_limits: BodyLimits,
        local: Callable[[Receive], Awaitable[None]],
    ) -> None:
        """Answer a request for a session this worker does not hold, through its owner.

        A session id that names its owner (:func:`session_owner`) is posted
        straight to that worker's mailbox: one send, no lookup, and no wait
        for the broker's reply (the owner's answer says it arrived).  Only
        when nobody reads that mailbox (which the broker says a moment
        later), or for an id that names no worker, the broker's
        :meth:`Bus.route` looks the owner up and tells a live owner that is
        not reading (``503``) from none (the session is gone).  An id
        naming this worker is one of its own sessions that has ended (or a
        forged one): answered here at once.  With no owner anywhere,
        ``local(receive)`` answers it here (an unknown session, in the
        transport's own words); the body already read is replayed to it.
        """
        hint = session_owner(session_id)
        if hint == self.worker_id:
            await local(receive)
            return

        async def look_up(bus: Bus, frame: bytes) -> RouteResult:
            route: RouteResult = await self._call(bus.route(session_id, frame))
            return route

        await self._forward(
            hint, look_up, scope, receive, send, body_limits=body_limits, local=local, local_if_gone=False
        )

    async def forward_to(
        self,
        worker_id: str,
        scope: Scope,
        receive: Receive,
        send: Send,
        *,
        body_limits: BodyLimits,
        local: Callable[[Receive], Awaitable[None]],
    ) -> None:
        """Answer a request through the worker ``worker_id`` (a task's, named by its id), as :meth:`forward` does.

        One post to its mailbox, no lookup.  When nobody reads that mailbox the
        worker's liveness decides: alive (its link is reconnecting) is ``503``,
        as for a session; dead or never known, ``local(receive)`` answers here,
        and so it does if the worker dies before its answer starts: what it
        held died with it, so this worker's "not found" is the answer.
        """

        async def liveness(bus: Bus, frame: bytes) -> RouteResult:
            alive: set[str] = await self._call(bus.alive([worker_id]))
            return RouteResult(worker_id if worker_id in alive else None, False)

        await self._forward(
            worker_id, liveness, scope, receive, send, body_limits=body_limits, local=local, local_if_gone=True
        )

    async def _forward(
        self,
        hint: str | None,
        unread: Callable[[Bus, bytes], Awaitable[RouteResult]],
        scope: Scope,
        receive: Receive,
        send: Send,
        *,
        body_limits: BodyLimits,
        local: Callable[[Receive], Awaitable[None]],
        local_if_gone: bool,
    ) -> None:
        """Read the body, post the request frame to ``hint``, relay the answer; one way for every forward.

        With no ``hint``, or when nobody read the hinted mailbox, ``unread``
        decides where the frame goes (it sends it, or says why it cannot).
        """
        try:
            body = await read_body(receive, body_limits)
        except ClientGone:
            return
        if isinstance(body, Outcome):
            await send_outcome(send, body)
            return
        exchange_id = f"{next(self._ids)}"
        frame = encode_frame({"k": _REQUEST, "x": exchange_id, "r": self.worker_id, "s": scope_to_wire(scope)}, body)
        outgoing = _Outgoing(self.settings.exchange_buffer)
        self._outgoing[exchange_id] = outgoing
        try:
            bus = self._bus
            if bus is None:
                raise BrokerUnavailable("not connected")
            if hint is not None:
                await self._post(bus, hint, frame, outgoing.undelivered)
                route = RouteResult(hint, True)
            else:
                route = await unread(bus, frame)
            while True:
                if route.owner is None:
                    await local(_replaying(body, receive))
                    return
                if not route.reached:
                    self._count("owner_unreachable")
                    await send_outcome(send, Outcome.WORKER_UNAVAILABLE)
                    return
                outgoing.owner = route.owner
                with trio.move_on_after(self.settings.ack_timeout):
                    await outgoing.acked.wait()
                if not outgoing.acked.is_set():
                    self.metrics.forwarded_out += 1
                    self._count("owner_silent")
                    await send_outcome(send, Outcome.WORKER_UNAVAILABLE)
                    return
                if not outgoing.unread:
                    break
                outgoing.retry()  # (a lookup sends it now, or says it cannot be)
                route = await unread(bus, frame)
            self.metrics.forwarded_out += 1
            if await self._relay(exchange_id, outgoing, receive, send, local_if_gone=local_if_gone):
                await local(_replaying(body, receive))
        except BrokerUnavailable:
            self._count("broker_unavailable")
            await send_outcome(send, Outcome.BROKER_UNAVAILABLE)
        finally:
            del self._outgoing[exchange_id]

    def _count(self, reason: str) -> None:
        self.metrics.forward_failures[reason] += 1

    async def _relay(
        self, exchange_id: str, outgoing: _Outgoing, receive: Receive, send: Send, *, local_if_gone: bool = False
    ) -> bool:
        """Replay the owner's answer to our client; tell the owner when the client goes.

        Returns True, having sent nothing, when the owner is gone before its
        answer started and ``local_if_gone``: the caller answers it here.

        Most answers (a ``202``, a short result) are one frame, here already
        (it acknowledged the request): replayed at once, with no task watching
        the client, since nothing is left to wait for.
        """
        waiting = outgoing.receive_nowait()
        if isinstance(waiting, _Answer) and waiting.kind == _RESPONSE and not waiting.more:
            await send({"type": "http.response.start", "status": waiting.status, "headers": list(waiting.headers)})
            await send({"type": "http.response.body", "body": waiting.body, "more_body": False})
            return False
        started = streaming = complete = answer_here = False
        owner = outgoing.owner
        assert owner is not None
        async with trio.open_nursery() as nursery:

            async def watch_client() -> None:
                while (await receive())["type"] != "http.disconnect":
                    pass
                if complete:
                    return  # an HTTP server reports a disconnect once the answer is sent, too: let it finish
                await self._tell(owner, {"k": _DISCONNECT, "x": exchange_id, "r": self.worker_id})
                nursery.cancel_scope.cancel()

            nursery.start_soon(watch_client)
            ending = _OWNER_GONE  # unless the loop finds out otherwise
            while True:
                if waiting is not None:
                    frame, waiting = waiting, None
                else:
                    try:
                        frame = await outgoing.receive()
                    except trio.EndOfChannel:
                        break
                if isinstance(frame, bytes):
                    ending = frame
                    break
                kind = frame.kind
                if kind == _FAILED:
                    ending = _OWNER_FAILED
                    break
                if kind not in (_RESPONSE, _BODY):
                    continue
                if (
                    kind == _RESPONSE
                ) == started:  # a second start, or a body before the start: not ours
                    self._drop_malformed("answer frame out of order", len(frame.body))
                    continue
                if kind == _RESPONSE:
                    started = True
                    headers = list(frame.headers)
                    streaming = _is_event_stream(headers)
                    await send(
                        {"type": "http.response.start", "status": frame.status, "headers": headers}
                    )
                more = frame.more
                complete = not more
                await send({"type": "http.response.body", "body": frame.body, "more_body": more})
                if complete:
                    nursery.cancel_scope.cancel()
                    return False
            if outgoing.overflowed:
                ending = _CLIENT_TOO_SLOW
                await self._tell(owner, {"k": _DISCONNECT, "x": exchange_id, "r": self.worker_id})
            reason, outcome = _ENDINGS[ending]
            self._count(reason)
            if not started and ending == _OWNER_GONE and local_if_gone:
                answer_here = True
            elif not started:
                await send_outcome(send, outcome)
            elif streaming:
                # An event stream may end at any event: its client reconnects and resumes from
                # its Last-Event-ID.  (Any other body stays cut short: it is incomplete.)
                await send({"type": "http.response.body", "body": b"", "more_body": False})
            nursery.cancel_scope.cancel()
        return answer_here

    async def _post(
        self, bus: Bus, worker_id: str, frame: bytes, undelivered: Callable[[BrokerUnavailable | None], None]
    ) -> None:
        """:meth:`Bus.post` (``send``, awaited, for a bus without it); a later failure marks the broker down."""

        def told(error: BrokerUnavailable | None) -> None:
            if error is not None:
                self._last_error = error
                self._mark(up=False)
            undelivered(error)

        post = getattr(bus, "post", None)
        if post is not None:
            await self._call(post(worker_id, frame, told))
        elif not await self._call(bus.send(worker_id, frame)):
            undelivered(None)

    async def _tell(self, worker_id: str, meta: Mapping[str, Any], body: bytes = b"") -> None:
        """Post a frame whose fate changes nothing here (nobody reading it: its exchange is over)."""
        bus = self._bus
        if bus is None:
            return
        with contextlib.suppress(BrokerUnavailable):
            await self._post(bus, worker_id, encode_frame(meta, body), _ignore)

    async def _send(self, worker_id: str, meta: Mapping[str, Any], body: bytes = b"") -> bool:
        """Send a frame and hear whether its worker read it (False too when the broker did not answer)."""
        bus = self._bus
        if bus is None:
            return False
        try:
            reached: bool = await self._call(bus.send(worker_id, encode_frame(meta, body)))
        except BrokerUnavailable:
            return False
        return reached

    # -- the mailbox ----------------------------------------------------------------------------------
    async def _read_mailbox(self, bus: Bus) -> None:
        async for raw in bus.frames():
            try:
                frame = _parse_frame(raw)
            except MalformedFrame as malformed:
                self._drop_malformed(malformed.reason, len(raw))
                continue
            if isinstance(frame, _Request):
                key = (frame.reply_to, frame.exchange)
                if key in self._incoming:
                    continue  # a repeated frame: that exchange is running already
                incoming = _Incoming(frame.exchange, frame.reply_to)
                self._incoming[key] = incoming
                assert self._nursery is not None
                self._nursery.start_soon(
                    self._answer_forwarded, frame.exchange, incoming, frame.scope, frame.body
                )
            elif isinstance(frame, _Disconnect):
                found = self._incoming.get((frame.reply_to, frame.exchange))
                if found is not None:
                    found.disconnect()
            else:
                outgoing = self._outgoing.get(frame.exchange)
                if outgoing is None:
                    continue  # its client is gone already
                outgoing.acked.set()  # the first frame of the answer acknowledges as well
                if frame.kind != _ACK:
                    outgoing.push(frame)

    def _drop_malformed(self, reason: str, size: int) -> None:
        """Count a frame that is not ours; one line (no traceback, no contents), at most 10 per 10 s."""
        self._count("malformed_frame")
        suppressed = self._bad_frames.allow("malformed_frame")
        if suppressed is None:
            return
        more = f" ({suppressed} more malformed frames not logged)" if suppressed else ""
        log.warning(
            "worker %s dropped a malformed frame from its broker mailbox: %s (%d bytes)%s",
            self.worker_id,
            reason,
            size,
            more,
            extra={"event": "broker_bad_frame", "worker": self.worker_id, "reason": reason},
        )

    # -- the owning side --------------------------------------------------------------------------------
    async def _answer_forwarded(
        self, exchange_id: str, incoming: _Incoming, scope: Scope, body: bytes
    ) -> None:
        """Run a forwarded exchange through our transports; stream every message of the answer back.

        The error boundary of one forwarded exchange: whatever happens, it ends
        here, the receiving worker hears of it, and the mailbox reader goes on.
        """
        reply_to = incoming.reply_to
        key = (reply_to, exchange_id)
        self.metrics.forwarded_in += 1
        delay = self._ack_delay
        # Rounded up to a quarter of the delay: the exchanges of one quarter share one wake-up.
        when = math.ceil((trio.current_time() + delay) * 4 / delay) * delay / 4
        self._set_timer(when, _ACK_TIMER, incoming)
        try:
            await self._serve_forwarded(exchange_id, incoming, scope, body)
        except Exception:
            log.exception("forwarded request failed", extra={"event": "forward_failed", "worker": reply_to})
            await self._tell(reply_to, {"k": _FAILED, "x": exchange_id})
        finally:
            incoming.ended = True
            del self._incoming[key]

    async def _serve_forwarded(self, exchange_id: str, incoming: _Incoming, scope: Scope, body: bytes) -> None:
        reply_to = incoming.reply_to

        async def until_disconnected() -> Message:
            await incoming.disconnected.wait()
            return {"type": "http.disconnect"}

        receive = _replaying(body, until_disconnected)
        scope["extensions"][DISCONNECT_NOTICE] = incoming.notice

        async def send(message: Message) -> None:
            if incoming.disconnected.is_set() or incoming.finished:
                return  # as an HTTP server does once its client is gone
            kind = message["type"]
            if kind == "http.response.start":
                incoming.start = message  # sent with the body: one frame for a whole small answer
                incoming.event_stream = _is_event_stream(message.get("headers", ()))
                return
            if kind != "http.response.body":
                return
            chunk = bytes(message.get("body", b""))
            if not message.get("more_body", False):
                incoming.finished = True
                await self._flush(incoming, end=chunk)
                return
            if chunk:
                incoming.held.append(chunk)
                incoming.held_bytes += len(chunk)
            if incoming.held_bytes >= _HOLD_BYTES:
                await self._flush(incoming)
                return
            # Events with no data (a priming event's id, a keep-alive comment) change nothing a client
            # sees until the next event: they wait as long as an acknowledgement would.
            quiet = incoming.event_stream and not _has_event_data(chunk)
            when = trio.current_time() + (self._ack_delay if quiet else _LINGER)
            if when < incoming.flush_at:
                incoming.flush_at = when
                self._set_timer(when, _FLUSH_TIMER, incoming)

        path = scope["path"]
        for target in self._targets:
            if await target.serve_forwarded(path, scope, receive, send):
                break
        else:
            await send_outcome(send, Outcome.NOT_FOUND)
        if not incoming.finished and not incoming.disconnected.is_set():
            await self._flush(incoming)  # what is held, then: the answer stops short
            await self._tell(reply_to, {"k": _FAILED, "x": exchange_id})

    async def _flush(self, incoming: _Incoming, *, end: bytes | None = None) -> None:
        """Send what is held of an answer as one frame; with ``end``, that chunk too, as the answer's last frame.

        One flush of an exchange at a time (its frames go out in order): the
        exchange's own task, and a timer's for what it held too long.
        """
        while incoming.flushing is not None:
            await incoming.flushing.wait()
        if incoming.disconnected.is_set() or (incoming.ended and end is None):
            return  # (an exchange that ended has told the receiver so: nothing may follow)
        start = incoming.start
        if end is None and start is None and not incoming.held:
            return  # sent meanwhile
        chunks = incoming.held
        if end is not None:
            chunks.append(end)
        incoming.start = None
        incoming.held = []
        incoming.held_bytes = 0
        incoming.flush_at = math.inf
        flushing = incoming.flushing = trio.Event()
        try:
            body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
            more = end is None
            meta: dict[str, Any]
            if start is not None:
                meta = {"k": _RESPONSE, "x": incoming.exchange, "st": start["status"], "h": _headers_to_wire(start.get("headers", ())), "m": more}
            else:
                meta = {"k": _BODY, "x": incoming.exchange, "m": more}
            incoming.answered = True
            if not more:
                await self._tell(incoming.reply_to, meta, body)  # the last: nothing to stop if nobody reads it
            elif not await self._send(incoming.reply_to, meta, body):
                incoming.disconnect()
        finally:
            incoming.flushing = None
            flushing.set()

    # -- timers of the exchanges this worker answers --------------------------------------------------
    def _set_timer(self, when: float, kind: int, incoming: _Incoming) -> None:
        """Call :meth:`_on_timer` for ``incoming`` at ``when`` (one task for every timer, no task per exchange)."""
        heapq.heappush(self._timers, (when, next(self._timer_ids), kind, incoming))
        scope = self._timer_scope
        if scope is not None and when < scope.deadline:
            scope.deadline = when

    async def _run_timers(self) -> None:
        timers = self._timers
        while True:
            with trio.CancelScope(deadline=timers[0][0] if timers else math.inf) as self._timer_scope:
                await trio.sleep_forever()
            self._timer_scope = None
            now = trio.current_time()
            while timers and timers[0][0] <= now:
                _, _, kind, incoming = heapq.heappop(timers)
                self._on_timer(kind, incoming, now)

    def _on_timer(self, kind: int, incoming: _Incoming, now: float) -> None:
        """What an answer holds goes out when due; an exchange with no answer yet after :data:`_ACK_DELAY` is
        acknowledged (with what it holds, or apart: the receiver's ``ack_timeout`` counts from its send)."""
        nursery = self._nursery
        if nursery is None or incoming.ended or incoming.disconnected.is_set():
            return
        if incoming.start is not None or incoming.held:
            if (kind == _FLUSH_TIMER and incoming.flush_at <= now) or (kind == _ACK_TIMER and not incoming.answered):
                nursery.start_soon(self._flush, incoming)
        elif kind == _ACK_TIMER and not incoming.answered:
            nursery.start_soon(self._tell, incoming.reply_to, {"k": _ACK, "x": incoming.exchange})


def _ignore(error: BrokerUnavailable | None) -> None:
    pass


def _replaying(body: bytes, receive: Receive) -> Receive:
    """``receive`` with the body already read put back in front."""
    pending = True

    async def replay() -> Message:
        nonlocal pending
        if pending:
            pending = False
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


# -- in one process ---------------------------------------------------------------------------------
class MemoryBroker:
    """A broker inside one process: several apps (workers) join it and forward to one another.

    What tests and embedders use to run the forwarding of :class:`BrokerLink`
    without Redis; the semantics are the Redis broker's, liveness included
    (:meth:`kill` ends a worker as ``kill -9`` would), and ``available =
    False`` makes every operation fail as an unreachable broker does.
    """

    def __init__(self, settings: BrokerSettings | None = None, **options: Any) -> None:
        self.settings = settings or BrokerSettings(**options)
        self.available = True
        self._owners: dict[str, tuple[str, float]] = {}
        self._workers: dict[str, float] = {}
        self._mailboxes: dict[str, trio.MemorySendChannel[bytes]] = {}
        self._killed: set[str] = set()
        self.frames_delivered = 0
        """Frames that reached a mailbox (what a test counts to see what a forward costs)."""
        self.operations: Counter[str] = Counter()
        """Calls of each :class:`Bus` method by every worker (what a test counts to see which a forward used)."""

    def __repr__(self) -> str:
        return f"MemoryBroker(prefix={self.settings.prefix!r})"

    def publish(self, worker_id: str, frame: bytes) -> bool:
        """Put ``frame`` in a worker's mailbox as anyone who can publish there could (False: no such mailbox)."""
        mailbox = self._mailboxes.get(worker_id)
        if mailbox is None:
            return False
        mailbox.send_nowait(frame)
        return True

    def _check(self, worker_id: str) -> float:
        if not self.available or worker_id in self._killed:
            raise BrokerUnavailable("memory broker switched off")
        return trio.current_time()

    def owner_of(self, session_id: str) -> str | None:
        entry = self._owners.get(session_id)
        return entry[0] if entry is not None and entry[1] > trio.current_time() else None

    def kill(self, worker_id: str) -> None:
        """Close the worker's mailbox as a dead process's connection closes (its keys expire in time)."""
        self._killed.add(worker_id)
        mailbox = self._mailboxes.pop(worker_id, None)
        if mailbox is not None:
            mailbox.close()

    def cluster_sessions(self) -> int:
        now = trio.current_time()
        return sum(1 for _, expiry in self._owners.values() if expiry > now)

    @asynccontextmanager
    async def connect(self, worker_id: str) -> AsyncIterator[Bus]:
        send, receive = trio.open_memory_channel[bytes](math.inf)
        self._mailboxes[worker_id] = send
        self._workers[worker_id] = trio.current_time() + self.settings.worker_ttl
        try:
            async with receive:
                yield _MemoryBus(self, worker_id, receive)
        finally:
            if self._mailboxes.get(worker_id) is send:
                del self._mailboxes[worker_id]
            send.close()


class _MemoryBus:
    def __init__(self, broker: MemoryBroker, worker_id: str, mailbox: trio.MemoryReceiveChannel[bytes]) -> None:
        self._broker = broker
        self.worker_id = worker_id
        self._mailbox = mailbox

    def frames(self) -> trio.abc.ReceiveChannel[bytes]:
        return self._mailbox

    async def claim(self, session_id: str) -> bool:
        broker = self._broker
        broker.operations["claim"] += 1
        now = broker._check(self.worker_id)
        cap = broker.settings.max_sessions
        if cap is not None and broker.cluster_sessions() >= cap:
            return False
        broker._owners[session_id] = (self.worker_id, now + broker.settings.session_ttl)
        return True

    def _deliver(self, worker_id: str, frame: bytes) -> bool:
        mailbox = self._broker._mailboxes.get(worker_id)
        if mailbox is None:
            return False
        mailbox.send_nowait(frame)
        self._broker.frames_delivered += 1
        return True

    async def route(self, session_id: str, frame: bytes) -> RouteResult:
        broker = self._broker
        broker.operations["route"] += 1
        now = broker._check(self.worker_id)
        owner = broker.owner_of(session_id)
        if owner is None:
            return RouteResult(None, False)
        if self._deliver(owner, frame):
            return RouteResult(owner, True)
        if broker._workers.get(owner, 0.0) > now:
            return RouteResult(owner, False)
        broker._owners.pop(session_id, None)
        return RouteResult(None, False)

    async def send(self, worker_id: str, frame: bytes) -> bool:
        self._broker.operations["send"] += 1
        self._broker._check(self.worker_id)
        return self._deliver(worker_id, frame)

    async def post(self, worker_id: str, frame: bytes, undelivered: Callable[[BrokerUnavailable | None], None]) -> None:
        self._broker.operations["post"] += 1
        self._broker._check(self.worker_id)
        if not self._deliver(worker_id, frame):
            undelivered(None)

    async def heartbeat(self) -> tuple[bool, int]:
        broker = self._broker
        broker.operations["heartbeat"] += 1
        now = broker._check(self.worker_id)
        fresh = broker._workers.get(self.worker_id, 0.0) > now
        broker._workers[self.worker_id] = now + broker.settings.worker_ttl
        return fresh, broker.cluster_sessions()

    async def refresh(self, session_ids: Collection[str], released: Collection[str]) -> int:
        broker = self._broker
        broker.operations["refresh"] += 1
        now = broker._check(self.worker_id)
        for session_id in session_ids:
            broker._owners[session_id] = (self.worker_id, now + broker.settings.session_ttl)
        for session_id in released:
            if broker.owner_of(session_id) == self.worker_id:
                del broker._owners[session_id]
        for session_id, (_, expiry) in list(broker._owners.items()):
            if expiry <= now:
                del broker._owners[session_id]
        return len(broker._owners)

    async def alive(self, worker_ids: Collection[str]) -> set[str]:
        broker = self._broker
        broker.operations["alive"] += 1
        now = broker._check(self.worker_id)
        return {w for w in worker_ids if broker._workers.get(w, 0.0) > now}
