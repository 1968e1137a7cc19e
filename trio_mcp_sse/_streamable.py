"""The Streamable HTTP transport (MCP 2025-03-26 to 2026-07-28): one endpoint for POST, GET and DELETE.

Theory of operation
-------------------
Every message the client sends is a ``POST`` to the endpoint (default
``/mcp``).  ``initialize`` without an ``Mcp-Session-Id`` opens a session (the
id travels back in that header); every later request names its session in the
header.  Notifications and responses are answered ``202`` once they are in the
session's inbound channel.  A request is answered on its own HTTP response:
an event stream (``response_mode="sse"``, the default) that carries the
notifications and server->client requests made while serving it and ends with
its response, or one JSON body (``"json"``, or a client whose ``Accept`` lists
only ``application/json``).  ``GET`` opens the session's *standalone* stream
for messages related to no request; ``DELETE`` ends the session.

The session core is the same as for HTTP+SSE: a :class:`~trio_mcp_sse.lowlevel.Session`
task owns the server layer, and everything it sends leaves through its bounded
outbound channel as :class:`~trio_mcp_sse.lowlevel.Outgoing` items that name the client
request they belong to.  Here one *router* task per session reads that channel
and hands each item to its :class:`_Stream`: the stream of its request, or the
standalone stream (messages of no request; the non-final messages of a request
answered as JSON, which has no room for them).  Each stream's HTTP response is
written by the request that holds it, from a small bounded channel; a writer
that stops reading is let go after ``send_timeout`` and the router moves on.

Resumability: with an :class:`~trio_mcp_sse.EventStore` (in memory by default)
every event of a stream gets an id that names the stream.  Each stream starts
with a *priming* event (an id, the ``retry`` hint, empty data).  A client whose
connection broke -- or that the server disconnected on purpose, see
:meth:`~trio_mcp_sse.server.Context.close_sse_stream` -- sends ``GET`` with
``Last-Event-ID`` and gets that stream's later events and no others; if the
request is still running, the resumed response goes on until its answer.  A
broken connection never cancels a request: only ``notifications/cancelled``
does.

Two protocol eras share the endpoint.  A POST whose ``MCP-Protocol-Version``
is not a handshake revision (``is_modern_request``: 2026-07-28, or a revision
nobody here speaks, which the server layer then refuses with -32022) has no
session: it is served like stateless mode, by a session of its own whose
server layer runs the modern lifecycle (``server/_modern``), with no event ids
(the revision dropped resumability).  Its answer is JSON when the response
comes alone -- with the HTTP status its error code calls for (400, 404) -- and
an event stream when progress or log messages precede it, or for
``subscriptions/listen``, whose stream stays open.  ``GET`` and ``DELETE`` are
``405`` under that revision.  With a broker, its ``tasks/*`` requests are
forwarded to the worker their task id names (:meth:`StreamableHTTPTransport._addressed_worker`).

Refusals are decided by the intake tables (``_intake``) and the one
:class:`~trio_mcp_sse._http.Outcome` table; their bodies are JSON-RPC errors
without an id, as the specification describes.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final, Literal, cast

import orjson
import trio

from ._auth import AccessToken, AuthSettings
from ._broker import Broker, task_owner
from ._channel import ChannelReceiver, ChannelSender, open_channel
from ._cors import CorsSettings
from ._event_store import EventStore, MemoryEventStore, parse_event_id, stores_without_waiting
from ._host import SessionHost
from ._http import (
    DISCONNECT_NOTICE,
    BodyBudget,
    BodyLimits,
    ClientGone,
    DisconnectNotice,
    HeaderView,
    Outcome,
    RawHeaders,
    Receive,
    Scope,
    Send,
    header,
    peer_of,
    read_body,
    send_accepted,
)
from ._intake import (
    Admit,
    Answer,
    Intake,
    RequestHead,
    Rule,
    VerifyToken,
    allow_methods,
    authenticate,
    content_type_json,
    declared_body_within,
    host_allowed,
    origin_allowed,
    send_answer,
    settle,
)
from ._jsonrpc import (
    INVALID_REQUEST,
    PARSE_ERROR,
    InvalidMessage,
    JSONRPCNotification,
    JSONRPCRequest,
    RequestId,
    parse_message,
)
from ._mount import REFUSAL_OUTCOME, MountedTransport
from ._ops import OperationalEndpoints
from ._protocol_versions import (
    HANDSHAKE_PROTOCOL_VERSIONS,
    MODERN_PROTOCOL_VERSIONS,
    decode_header_value,
    is_modern_request,
)
from ._resource_metadata import ResourceMetadataEndpoint
from ._security import SecuritySettings
from ._session import (
    Delivery,
    Incoming,
    Outgoing,
    Session,
    SessionHandler,
    SessionLimits,
    SessionRefused,
    SessionRegistry,
    is_session_id,
)
from ._sse import encode_comment, encode_event

__all__ = ["ResponseMode", "StreamableHTTPTransport"]

log = logging.getLogger("trio_mcp_sse")

ResponseMode = Literal["sse", "json"]
STANDALONE: Final = "get"
"""The name of a session's standalone stream in its event ids."""

_NO_HEADERS: Final[RawHeaders] = ()
_SERVER_ERROR: Final = -32000
_EVENT_STREAM_HEADERS: Final[RawHeaders] = (
    (b"content-type", b"text/event-stream"),
    (b"cache-control", b"no-cache, no-transform"),
    (b"x-accel-buffering", b"no"),
)
_JSON_HEADERS: Final[RawHeaders] = ((b"content-type", b"application/json"), (b"cache-control", b"no-store"))
_STREAM_BUFFER: Final = 16
"""Events queued for one response writer: small, so a slow reader soon holds the session's
outbound queue back, where its byte budget applies."""
_PENDING_KEPT: Final = 256
"""Messages kept for a standalone stream no client is reading yet (oldest dropped first)."""

# One event as the router hands it to a writer: (event id, JSON data, final, reconnect).
_Event = tuple[str | None, bytes, bool, bool]
_END: Final[_Event] = (None, b"", True, False)
_KEEPALIVE: Final = encode_comment("ping")
_RECONNECT: Final[_Event] = (None, b"", False, True)
_Rest = Callable[[], Awaitable[None]]
"""What is left of routing one item when it has to wait (see :meth:`_SessionStreams.route_queued`)."""


_MODERN_ERROR_STATUS: Final = {
    -32700: 400,  # parse error
    -32600: 400,  # invalid request
    -32602: 400,  # invalid params (a missing envelope included)
    -32020: 400,  # HeaderMismatch
    -32021: 400,  # MissingRequiredClientCapability
    -32022: 400,  # UnsupportedProtocolVersion
    -32601: 404,  # method not found
}
"""HTTP status of a 2026-07-28 response answered as JSON, by its JSON-RPC error code (else 200)."""
_TASK_METHODS: Final = frozenset({"tasks/get", "tasks/update", "tasks/cancel"})
"""The requests of the tasks extension addressed to one task, by its id in ``Mcp-Name``: with a broker, the
worker that id names answers them (docs/scaling.md)."""


def modern_status(data: bytes) -> int:
    """The HTTP status of one JSON-RPC response of the modern era (an error's code decides)."""
    if b'"error"' not in data:
        return 200
    try:
        error = orjson.loads(data).get("error")
    except (orjson.JSONDecodeError, AttributeError):
        return 200
    code = error.get("code") if isinstance(error, dict) else None
    return _MODERN_ERROR_STATUS.get(code, 200) if isinstance(code, int) else 200


def _jsonrpc_code(outcome: Outcome) -> int:
    return INVALID_REQUEST if outcome.status == 400 else _SERVER_ERROR


def accepts(head: RequestHead) -> tuple[bool, bool]:
    """Whether ``Accept`` admits (JSON, an event stream); no header admits both."""
    accept = head.header(b"accept")
    if accept is None:
        return True, True
    return _accepted_types(accept) if len(accept) <= _ACCEPT_CACHED_LENGTH else _parse_accept(accept)


def _parse_accept(accept: str) -> tuple[bool, bool]:
    types = {part.partition(";")[0].strip().lower() for part in accept.split(",")}
    anything = "*/*" in types
    return (
        anything or "application/json" in types or "application/*" in types,
        anything or "text/event-stream" in types or "text/*" in types,
    )


_ACCEPT_CACHED_LENGTH: Final = 256
_accepted_types: Final = functools.lru_cache(maxsize=32)(_parse_accept)
"""A client sends the same ``Accept`` with every request: parse each short value once."""


# -- the transport's own intake rows ----------------------------------------------------------------
def protocol_version_supported(versions: Sequence[str] = HANDSHAKE_PROTOCOL_VERSIONS) -> Rule:
    """An ``MCP-Protocol-Version`` header naming a revision this server does not speak: 400.

    No header is fine: the specification says to assume 2025-03-26 then.
    """
    known = frozenset(versions)

    def rule(head: RequestHead) -> Answer | None:
        version = head.header(b"mcp-protocol-version")
        if version is None or version in known:
            return None
        return Answer(Outcome.BAD_PROTOCOL_VERSION)

    return rule


def handshake_era_only() -> Rule:
    """GET and DELETE under a revision without a handshake: 405, ``Allow: POST``.

    Protocol 2026-07-28 has no sessions to end and no standalone stream
    (``subscriptions/listen`` is a POST); any other non-handshake value is
    left to the version row.
    """
    not_allowed = Answer(Outcome.METHOD_NOT_ALLOWED, allow=b"POST")

    def rule(head: RequestHead) -> Answer | None:
        return not_allowed if head.header(b"mcp-protocol-version") in MODERN_PROTOCOL_VERSIONS else None

    return rule


def session_header_present() -> Rule:
    """No ``Mcp-Session-Id`` on a request that needs one (GET, DELETE): 400."""

    def rule(head: RequestHead) -> Answer | None:
        return Answer(Outcome.MISSING_SESSION_HEADER) if head.header(b"mcp-session-id") is None else None

    return rule


def accepts_event_stream() -> Rule:
    """A GET whose ``Accept`` does not admit ``text/event-stream``: 406."""

    def rule(head: RequestHead) -> Answer | None:
        return None if accepts(head)[1] else Answer(Outcome.NOT_ACCEPTABLE)

    return rule


# -- per session ------------------------------------------------------------------------------------------
class _Stream:
    """One logical event stream of a session: its standalone stream, or one request's."""

    __slots__ = ("finished", "json", "name", "pending", "reader", "request_id", "waiting", "writer")

    def __init__(self, name: str, request_id: RequestId | None, *, json: bool) -> None:
        self.name = name
        self.request_id = request_id
        self.json = json
        self.writer: ChannelSender[_Event] | None = None
        """The channel of the HTTP response writing this stream now, if any."""
        self.reader: ChannelReceiver[_Event] | None = None
        """That response's end of the channel (to tell whose it is when it detaches)."""
        self.finished = False
        """Its last event was routed: a request's answer, or the end of an unanswered one."""
        self.pending: deque[_Event] | None = None
        """Events routed while no response was writing the stream (and no store keeps them)."""
        self.waiting: trio.CancelScope | None = None
        """The writing response's wait for its client, while it has no event to write."""

    def wake(self) -> None:
        """Tell the writing response that its channel changed (an event, or its end)."""
        waiting = self.waiting
        if waiting is not None:
            self.waiting = None
            waiting.cancel()

    def close_writer(self) -> None:
        """End the writing response's channel: it writes what is queued, then stops."""
        if self.writer is not None:
            self.writer.close()
            self.writer = self.reader = None
        self.wake()


class _SessionStreams:
    """The router of one session: every outgoing item to the stream it belongs to.

    Routing needs no task of its own.  The session calls :meth:`route_queued`
    (its ``on_outgoing`` hook) after queueing each item, and what can be routed
    without waiting -- with the in-memory event store (or none) and a writer
    with room in its channel, everything -- is routed there and then, in the
    task that queued it.  When an item has to wait (an event store that does
    I/O, a writer whose channel is full), a router task starts in the session's
    nursery and routes, in order, until nothing is queued; then it ends.  So an
    idle session has no task here, and items are routed in the order they were
    queued either way.
    """

    __slots__ = (
        "_buffer",
        "_count",
        "_routing",
        "_send_timeout",
        "_stores_now",
        "by_name",
        "nursery",
        "requests",
        "session",
        "standalone",
        "standalone_mark",
        "store",
    )

    def __init__(self, session: Session, store: EventStore | None, *, buffer: int, send_timeout: float) -> None:
        self.session = session
        self.store = store
        self._stores_now = store is None or stores_without_waiting(store)
        """Events are stored (if at all) without a checkpoint: routing never waits for the store."""
        self.requests: dict[RequestId, _Stream] = {}
        """Streams of requests not answered yet, by request id."""
        self.standalone = _Stream(STANDALONE, None, json=False)
        self.by_name: dict[str, _Stream] = {STANDALONE: self.standalone}
        self._buffer = buffer
        self._send_timeout = send_timeout
        self._count = 0
        self.standalone_mark: str | None = None
        """The priming id stored ahead of messages kept for a standalone stream nobody reads."""
        self.nursery: trio.Nursery | None = None
        """Where a router task starts when routing has to wait (the session's, while it runs)."""
        self._routing = False
        """A router task is running: it routes everything queued, in order."""

    # -- streams -------------------------------------------------------------------------------------
    def open_request_stream(self, request_id: RequestId, *, json: bool) -> _Stream:
        self._count += 1
        stream = _Stream(f"r{self._count}", request_id, json=json)
        self.requests[request_id] = stream
        self.by_name[stream.name] = stream
        return stream

    def forget(self, stream: _Stream) -> None:
        """Drop a request's stream (a resume then replays from the event store alone)."""
        if stream.request_id is not None and self.requests.get(stream.request_id) is stream:
            self._unlist(stream.request_id)
        if stream is not self.standalone:
            self.by_name.pop(stream.name, None)

    def _unlist(self, request_id: RequestId) -> None:
        del self.requests[request_id]
        if not self.requests:
            self.requests = {}  # (an emptied dict keeps its table: an idle session need not)

    def attach(self, stream: _Stream) -> ChannelReceiver[_Event]:
        """Make a response the stream's writer; events kept for it meanwhile come first."""
        pending = stream.pending
        # Room for every kept event, so they all go ahead of anything routed later.
        send: ChannelSender[_Event]
        receive: ChannelReceiver[_Event]
        send, receive = open_channel(max(self._buffer, len(pending) if pending else 0))
        stream.close_writer()  # (a resume replaces a writer whose client is gone)
        stream.writer, stream.reader = send, receive
        if stream is self.standalone:
            self.standalone_mark = None
        if pending:
            stream.pending = None
            for event in pending:
                send.send_nowait(event)
        if stream.finished:
            send.close()
        return receive

    def detach(self, stream: _Stream, receive: ChannelReceiver[_Event]) -> None:
        """The response that held ``receive`` is done; the stream goes on without it."""
        receive.close()
        if stream.reader is receive:
            stream.writer = stream.reader = None
        if stream.finished and stream.writer is None:
            self.forget(stream)

    def close(self) -> None:
        """The session ended: end every stream's response."""
        for stream in (*self.by_name.values(), *self.requests.values()):
            stream.close_writer()

    # -- routing -------------------------------------------------------------------------------------
    def route_queued(self) -> None:
        """Route what the session queued: at once if nothing has to wait, else in a router task.

        The session's ``on_outgoing``: called after every item it queues (and
        when its channel closes).  Never waits, never raises for a stream's sake.
        """
        if self._routing:
            return  # the router task takes it, after what was queued before it
        rest = self._route_all_nowait()
        if rest is not None:
            self._start_router(rest)

    def handler_done(self) -> None:
        """The server layer returned: route what it left queued (the nursery waits for a router task)."""
        self.route_queued()

    def _route_all_nowait(self) -> _Rest | None:
        """Route queued items until none is left (``None``) or one has to wait (what is left of it)."""
        outgoing = self.session.outgoing
        while True:
            try:
                item = outgoing.receive_nowait()
            except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
                return None
            rest = self._route_nowait(item)
            if rest is not None:
                return rest

    def _start_router(self, rest: _Rest) -> None:
        nursery = self.nursery
        if nursery is None:
            return  # the session is over: nobody would write it
        try:
            nursery.start_soon(self._router, rest, name=f"router {self.session.id[:8]}")
        except RuntimeError:  # the nursery closed (the session is ending): as above
            return
        self._routing = True

    async def _router(self, rest: _Rest | None) -> None:
        """Route until nothing is queued, waiting where an item has to."""
        try:
            while rest is not None:
                await rest()
                del rest  # an idle session must not keep its last message alive
                rest = self._route_all_nowait()
        finally:
            self._routing = False

    def _route_nowait(self, item: Outgoing) -> _Rest | None:
        """Route one item without waiting; or return the rest of its routing, which has to wait.

        Nothing is done twice: the rest is either the whole item (before the
        event store was asked) or only its push to the stream's writer.
        """
        if item.data and not self._stores_now:
            return functools.partial(self._route, item)
        target = self._target(item)
        if target is None:
            return None
        stream, event = target
        if event[1] and self.store is not None and not stream.json:
            store = cast(MemoryEventStore, self.store)
            if stream is self.standalone and stream.writer is None and self.standalone_mark is None:
                # The first message nobody reads yet: the next GET's priming id goes before it.
                self.standalone_mark = store.store_nowait(self.session.id, STANDALONE, b"")
            event = (store.store_nowait(self.session.id, stream.name, event[1]), *event[1:])
        if event[2] and stream is not self.standalone:
            self._finish(stream)
        return self._push_nowait(stream, event)

    async def _route(self, item: Outgoing) -> None:
        """Route one item, waiting for the event store and for room in the writer's channel."""
        target = self._target(item)
        if target is None:
            return
        stream, event = target
        if event[1] and self.store is not None and not stream.json:
            if stream is self.standalone and stream.writer is None and self.standalone_mark is None:
                self.standalone_mark = await self.store.store(self.session.id, STANDALONE, b"")
            event = (await self.store.store(self.session.id, stream.name, event[1]), *event[1:])
        if event[2] and stream is not self.standalone:
            # Only once its answer is stored: a resume meanwhile still finds the stream live.
            self._finish(stream)
        rest = self._push_nowait(stream, event)
        if rest is not None:
            await rest()

    def _target(self, item: Outgoing) -> tuple[_Stream, _Event] | None:
        """The stream an item goes to and its event (no id yet); ``None`` for nothing to route."""
        request_id = item.related_request_id
        stream = self.requests.get(request_id) if request_id is not None else None
        if not item.data:
            if stream is None:
                return None  # a wake-up (the session closing): nothing to route
            if item.reconnect:
                return None if stream.json else (stream, _RECONNECT)
            return (stream, _END) if item.final else None  # (final: the request ended unanswered)
        if stream is None or (stream.json and not item.final):
            stream = self.standalone
        return stream, (None, item.data, item.final, False)

    def _finish(self, stream: _Stream) -> None:
        """Its last event is being routed: no later item belongs to it."""
        stream.finished = True
        if stream.writer is None:
            self.forget(stream)  # nobody holds it; a resume replays it from the store
        elif stream.request_id is not None:
            self._unlist(stream.request_id)

    def _push_nowait(self, stream: _Stream, event: _Event) -> _Rest | None:
        """Hand an event to the stream's writer, or keep it; the rest if the writer has no room."""
        writer = stream.writer
        if writer is not None:
            try:
                writer.send_nowait(event)
            except trio.WouldBlock:
                return functools.partial(self._push_waiting, stream, writer, event)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                stream.writer = stream.reader = None  # its response ended: the client left
            else:
                stream.wake()
                return None
        self._unwritten(stream, event)
        return None

    async def _push_waiting(self, stream: _Stream, writer: ChannelSender[_Event], event: _Event) -> None:
        """Wait (at most ``send_timeout``) for room in a writer's channel; let the writer go if none comes."""
        if stream.writer is writer:
            with trio.move_on_after(self._send_timeout):
                try:
                    await writer.send(event)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    if stream.writer is writer:
                        stream.writer = stream.reader = None  # its response ended: the client left
                else:
                    stream.wake()
                    return
            if stream.writer is writer:
                log.warning(
                    "session %s: stream %s is not being read; letting its response go",
                    self.session.id,
                    stream.name,
                    extra={"event": "slow_stream", "session_id": self.session.id},
                )
                stream.close_writer()
        rest = self._push_nowait(stream, event)  # (a resume may have attached a new writer meanwhile)
        if rest is not None:
            await rest()

    def _unwritten(self, stream: _Stream, event: _Event) -> None:
        """An event no response is writing: kept for the standalone stream, else left to the store."""
        if stream is not self.standalone:
            # Nobody writes this request's stream: its client left.  Only the event store can
            # bring its events back (a resume replays them); once it is over, let it go.
            if event[2]:
                self.forget(stream)
            return
        if event[1] or event is _END:
            pending = stream.pending
            if pending is None:
                pending = stream.pending = deque()
            pending.append(event)
            if len(pending) > _PENDING_KEPT:
                pending.popleft()
                log.warning(
                    "session %s: no client reads stream %s; dropped its oldest message",
                    self.session.id,
                    stream.name,
                    extra={"event": "stream_overflow", "session_id": self.session.id},
                )


class StreamableHTTPTransport(MountedTransport):
    """Serve MCP over Streamable HTTP: sessions of revisions 2025-03-26 to 2025-11-25, and 2026-07-28.

    ``handler`` is the server layer, e.g. :meth:`trio_mcp_sse.MCPServer.run_session`.
    Mount it like :class:`~trio_mcp_sse.lowlevel.SseServerTransport` (as a whole ASGI
    app, :meth:`wrap`, :meth:`init_app`).  Options beyond those the HTTP+SSE
    transport shares (``keepalive_interval``, ``security``, ``limits``,
    ``auth``, ``cors``, ``health_path``, ``ready_path``, ``metrics_path``,
    ``registry``), all documented in ``docs/transports.md``:

    ``path``
        The MCP endpoint, relative to the mount point.
    ``response_mode``
        ``"sse"``: a request is answered with an event stream carrying its
        related messages, then its response; ``"json"``: with one JSON body
        (related messages go to the standalone stream).  A client whose
        ``Accept`` lists only ``application/json`` gets JSON either way.
    ``event_store``
        Where stream events are kept for ``Last-Event-ID`` resumption (a
        bounded :class:`~trio_mcp_sse.MemoryEventStore` by default); ``None``
        disables resumability (no event ids, no priming events).
    ``retry_interval``
        Seconds a client should wait before reconnecting a stream the server
        closed (the SSE ``retry`` field of the priming event).
    ``stateless``
        No protocol sessions: no ``Mcp-Session-Id``; every request is served by
        a fresh session that ends with its answer, so any worker can serve any
        request.  ``GET`` and ``DELETE`` are ``405``, streams are not
        resumable, and a tool cannot send requests to the client (sampling,
        elicitation, roots): its answer would have nowhere to go.
    ``host``
        Share sessions, limits, metrics and drain with another transport of
        the same app (the HTTP+SSE transport beside it).
    """

    def __init__(
        self,
        handler: SessionHandler,
        *,
        path: str = "/mcp",
        response_mode: ResponseMode = "sse",
        event_store: EventStore | Literal["memory"] | None = "memory",
        retry_interval: float = 1.0,
        keepalive_interval: float | None = 15.0,
        security: SecuritySettings | None = None,
        limits: SessionLimits | None = None,
        auth: AuthSettings | None = None,
        cors: CorsSettings | None = None,
        health_path: str | None = "/healthz",
        ready_path: str | None = "/readyz",
        metrics_path: str | None = None,
        registry: SessionRegistry | None = None,
        broker: Broker | str | None = None,
        host: SessionHost | None = None,
        stateless: bool = False,
    ) -> None:
        if not path.startswith("/"):
            raise ValueError(f"path must start with '/': {path!r}")
        if response_mode not in ("sse", "json"):
            raise ValueError(f"response_mode must be 'sse' or 'json', not {response_mode!r}")
        if retry_interval < 0:
            raise ValueError("retry_interval must be >= 0")
        if keepalive_interval is not None and keepalive_interval <= 0:
            raise ValueError("keepalive_interval must be > 0 or None")
        ops = OperationalEndpoints(health_path=health_path, ready_path=ready_path, metrics_path=metrics_path)
        if path in ops.paths.values():
            raise ValueError(f"path must differ from the operational endpoints: {path!r}")
        self._handler = handler
        security = security or SecuritySettings()
        host = host or SessionHost(handler, keepalive_interval=None, limits=limits, registry=registry, broker=broker)
        self._mount(host, security, cors, ops)
        self.path = path
        self.response_mode: ResponseMode = response_mode
        self.stateless = stateless
        self.event_store: EventStore | None = (
            None if stateless else MemoryEventStore() if event_store == "memory" else event_store
        )
        if isinstance(self.event_store, MemoryEventStore) and self.metrics.event_store is None:
            self.metrics.event_store = self.event_store  # its bytes and evictions on /metrics
        self.retry_ms = round(retry_interval * 1000)
        self.keepalive_interval = keepalive_interval
        self.auth = auth
        self.resource_metadata = ResourceMetadataEndpoint.of(auth, security, [path])
        if self.host.body_budget is None:
            self.host.body_budget = BodyBudget(security.body_budget)
        self.body_limits = BodyLimits(security.max_body_size, security.body_timeout, self.host.body_budget)
        self._streams: dict[str, _SessionStreams] = {}
        methods = allow_methods(b"POST", cors=cors) if stateless else allow_methods(b"GET", b"POST", b"DELETE", cors=cors)
        shared = (host_allowed(security), origin_allowed(security, cors), authenticate(auth, path))
        version = protocol_version_supported()
        # The status tables of docs/transports.md, row by row.
        # POST has no version row: a revision without a handshake is answered by the modern era.
        self.post_intake = Intake(methods, declared_body_within(security.max_body_size), *shared, content_type_json())
        modern = handshake_era_only()
        self.get_intake = Intake(methods, *shared, modern, accepts_event_stream(), version, session_header_present())
        self.delete_intake = Intake(methods, *shared, modern, version, session_header_present())

    # -- sessions ------------------------------------------------------------------------------------
    async def _serve_session(self, session: Session) -> None:
        """The session task: the server layer, its items routed as they are queued (:class:`_SessionStreams`)."""
        limits = self.sessions.limits
        # A session of one request (stateless, or of the modern era) is never resumed.
        store = None if session.stateless else self.event_store
        streams = _SessionStreams(session, store, buffer=min(limits.outbound_buffer, _STREAM_BUFFER), send_timeout=limits.send_timeout)
        self._streams[session.id] = streams
        session.on_outgoing = streams.route_queued
        try:
            async with trio.open_nursery() as nursery:
                streams.nursery = nursery  # (for a router task, when routing has to wait)
                try:
                    await self._handler(session)
                finally:
                    streams.handler_done()
        finally:
            streams.nursery = None
            session.on_outgoing = None
            streams.close()
            del self._streams[session.id]
            if self.event_store is not None:
                with trio.CancelScope(shield=True), trio.move_on_after(limits.close_timeout):
                    await self.event_store.forget_session(session.id)

    def _addressed_session(self, path: str, scope: Scope) -> str | None:
        if path != self.path or self.stateless:
            return None
        session_id = header(scope, b"mcp-session-id")
        if session_id is None or not is_session_id(session_id) or is_modern_request(header(scope, b"mcp-protocol-version")):
            return None
        return session_id

    def _addressed_worker(self, path: str, scope: Scope) -> str | None:
        """A 2026-07-28 ``tasks/get``, ``tasks/update`` or ``tasks/cancel``: the worker its task id names.

        Read from the routing headers the server layer checks against the body
        (``Mcp-Method``, and ``Mcp-Name`` decoded the same way), so a request
        is forwarded only to be answered there as it would be here.
        """
        if path != self.path or scope.get("method") != "POST" or header(scope, b"mcp-method") not in _TASK_METHODS:
            return None
        if not is_modern_request(header(scope, b"mcp-protocol-version")):
            return None
        headers = HeaderView(scope["headers"])
        if headers.get("mcp-method") not in _TASK_METHODS:  # (a repeated header: the server refuses it, here too)
            return None
        return task_owner(decode_header_value(headers.get("mcp-name")))

    async def _route(self, path: str, scope: Scope, receive: Receive, send: Send) -> bool:
        if path != self.path:
            return False
        if not self.host.running:  # no lifespan reached us
            async with self.host.hosting():
                await self._serve(scope, receive, send)
            return True
        await self._serve(scope, receive, send)
        return True

    async def _serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        head = RequestHead.from_scope(scope)
        method = head.method
        intake = self.get_intake if method == "GET" else self.delete_intake if method == "DELETE" else self.post_intake
        decision = intake.decide(head)
        admitted = decision if isinstance(decision, Admit) else await self._admit(intake, head, decision, send)
        if admitted is None:
            return
        if method == "POST":
            await self._serve_post(scope, head, admitted, receive, send)
        elif method == "GET":
            await self._serve_get(head, admitted.principal, receive, send)
        else:
            await self._serve_delete(head, admitted.principal, send)

    # -- answering ---------------------------------------------------------------------------------------
    def _cors_headers(self, head: RequestHead) -> RawHeaders:
        headers = list(super()._cors_headers(head))
        if headers and not any(name == b"access-control-expose-headers" for name, _ in headers):
            headers.append((b"access-control-expose-headers", b"mcp-session-id"))
        return headers

    async def _answer(
        self, send: Send, head: RequestHead, outcome: Outcome, *, detail: str | None = None, code: int | None = None
    ) -> None:
        await self._answer_with(send, head, Answer(outcome), detail=detail, code=code)

    async def _answer_with(
        self, send: Send, head: RequestHead, answer: Answer, *, detail: str | None = None, code: int | None = None
    ) -> None:
        if answer.outcome is Outcome.PREFLIGHT:
            await send_answer(send, answer, metrics=self.metrics)
            return
        await send_answer(
            send,
            answer,
            metrics=self.metrics,
            cors_headers=self._cors_headers(head),
            detail=detail,
            jsonrpc_code=code if code is not None else _jsonrpc_code(answer.outcome),
            scope=head.scope,
        )

    async def _admit(self, intake: Intake, head: RequestHead, decision: Answer | VerifyToken, send: Send) -> Admit | None:
        settled = await settle(intake, head, decision, self.auth)
        if isinstance(settled, Admit):
            return settled
        await self._answer_with(send, head, settled)
        return None

    def _session_of(self, head: RequestHead, principal: str | None) -> tuple[Session, _SessionStreams] | None:
        """The session named by ``Mcp-Session-Id``, if it is ours, alive, and the caller's."""
        session_id = head.header(b"mcp-session-id")
        if session_id is None or not is_session_id(session_id):
            return None
        streams = self._streams.get(session_id)
        if streams is None or streams.session.principal != principal or streams.session.closed:
            return None
        return streams.session, streams

    # -- POST ------------------------------------------------------------------------------------------
    async def _serve_post(
        self, scope: Scope, head: RequestHead, admitted: Admit, receive: Receive, send: Send
    ) -> None:
        principal, token = admitted.principal, admitted.token
        try:
            body = await read_body(receive, self.body_limits)
        except ClientGone:
            return
        if isinstance(body, Outcome):  # too large, too slow, or over the worker's budget
            await self._answer(send, head, body)
            return
        try:
            message = parse_message(body)
        except InvalidMessage as invalid:
            outcome = Outcome.INVALID_MESSAGE
            await self._answer(send, head, outcome, detail=invalid.message, code=invalid.code or PARSE_ERROR)
            return
        del body
        short = self.post_intake.refuse_message(head, admitted, message)
        if short is not None:  # a tool its token's scopes do not cover: 403, so the client can step up
            await self._answer_with(send, head, short)
            return
        headers = HeaderView(scope["headers"])
        version = head.header(b"mcp-protocol-version")
        if is_modern_request(version):
            if version not in MODERN_PROTOCOL_VERSIONS and not _has_envelope(message):
                # An unknown revision from a client without the 2026-07-28 envelope: a
                # handshake-era client with a bad header, told so in its own terms.
                await self._answer(send, head, Outcome.BAD_PROTOCOL_VERSION)
                return
            await self._serve_modern(message, headers, head, token, receive, send)
            return
        if self.stateless:
            await self._serve_stateless(message, headers, head, token, receive, send)
            return
        session_id = head.header(b"mcp-session-id")
        if session_id is None:
            if not (isinstance(message, JSONRPCRequest) and message.method == "initialize"):
                await self._answer(send, head, Outcome.MISSING_SESSION_HEADER)
                return
            if self._answer_form(head) is None:  # before opening: a refused initialize leaves no session
                await self._answer(send, head, Outcome.NOT_ACCEPTABLE)
                return
            try:
                session = await self.sessions.open_session(
                    principal=principal, headers=headers, handler=self._serve_session, peer=peer_of(head.scope) if head.scope else None
                )
            except SessionRefused as refused:
                await self._answer(send, head, REFUSAL_OUTCOME[refused.reason])
                return
            await self._serve_request(session, self._streams[session.id], message, headers, token, head, receive, send)
            return
        if not isinstance(message, JSONRPCRequest):
            if session_id not in self._streams:  # not one of ours (an HTTP+SSE session shares the manager)
                await self._answer(send, head, Outcome.UNKNOWN_SESSION)
                return
            delivery = await self.sessions.deliver(session_id, principal, Incoming(message, headers, token))
            if delivery is Delivery.ACCEPTED:
                await send_accepted(send, self._session_headers(head, session_id))
            else:
                await self._answer(send, head, self.delivery_outcome(delivery))
            return
        found = self._session_of(head, principal)
        if found is None:
            await self._answer(send, head, Outcome.UNKNOWN_SESSION)
            return
        await self._serve_request(found[0], found[1], message, headers, token, head, receive, send)

    async def _serve_modern(
        self,
        message: Any,
        headers: HeaderView,
        head: RequestHead,
        token: AccessToken | None,
        receive: Receive,
        send: Send,
    ) -> None:
        """Protocol 2026-07-28: every request stands alone, served by a session of its own.

        The server layer checks the request's envelope and headers; this only
        answers what has no request to answer (notifications: 202, or -32022
        for a revision nobody here speaks; a posted response: 400).
        """
        if isinstance(message, JSONRPCNotification):
            version = head.header(b"mcp-protocol-version")
            if version not in MODERN_PROTOCOL_VERSIONS:
                data = orjson.dumps(
                    {
                        "jsonrpc": "2.0",
                        "id": None,
                        "error": {
                            "code": -32022,
                            "message": "Unsupported protocol version",
                            "data": {"supported": list(MODERN_PROTOCOL_VERSIONS), "requested": version},
                        },
                    }
                )
                await self._send_json(send, 400, data, list(self._cors_headers(head)))
                return
            await send_accepted(send, self._cors_headers(head))
            return
        if not isinstance(message, JSONRPCRequest):
            await self._answer(send, head, Outcome.INVALID_MESSAGE, detail="a 2026-07-28 client sends requests and notifications only")
            return
        if message.method == "subscriptions/listen" and not accepts(head)[1]:
            await self._answer(send, head, Outcome.NOT_ACCEPTABLE)  # a listen answer is a stream
            return
        await self._serve_stateless(message, headers, head, token, receive, send, modern=True)

    async def _send_json(self, send: Send, status: int, data: bytes, headers: list[tuple[bytes, bytes]]) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [*_JSON_HEADERS, (b"content-length", str(len(data)).encode("ascii")), *headers],
            }
        )
        await send({"type": "http.response.body", "body": data})

    async def _serve_stateless(
        self,
        message: Any,
        headers: HeaderView,
        head: RequestHead,
        token: AccessToken | None,
        receive: Receive,
        send: Send,
        *,
        modern: bool = False,
    ) -> None:
        """One request, one short-lived session; notifications and responses have no one to reach."""
        if not isinstance(message, JSONRPCRequest):
            await send_accepted(send, self._cors_headers(head))
            return
        try:
            session = await self.sessions.open_session(
                principal=None if token is None else token.subject,
                headers=headers,
                handler=self._serve_session,
                stateless=True,
            )
        except SessionRefused as refused:
            await self._answer(send, head, REFUSAL_OUTCOME[refused.reason])
            return
        try:
            await self._serve_request(
                session, self._streams[session.id], message, headers, token, head, receive, send, modern=modern
            )
        finally:
            await self.sessions.close_session(session, "stateless request answered")

    def _answer_form(self, head: RequestHead) -> bool | None:
        """How a request is answered: JSON (True), an event stream (False), or not at all (406)."""
        wants_json, wants_sse = accepts(head)
        as_json = self.response_mode == "json" or not wants_sse
        return None if as_json and not wants_json else as_json

    def _session_headers(self, head: RequestHead, session_id: str | None) -> list[tuple[bytes, bytes]]:
        """Response headers: the session id (``None``: a session of one request has none), CORS."""
        if session_id is None:
            return list(self._cors_headers(head))
        return [(b"mcp-session-id", session_id.encode("ascii")), *self._cors_headers(head)]

    async def _serve_request(
        self,
        session: Session,
        streams: _SessionStreams,
        message: JSONRPCRequest,
        headers: HeaderView,
        token: AccessToken | None,
        head: RequestHead,
        receive: Receive,
        send: Send,
        *,
        modern: bool = False,
    ) -> None:
        """Deliver one request and write its response stream (or JSON body).

        ``modern``: the JSON body's status follows its error code, and an
        event stream is only started once something precedes the response
        (an answer that comes alone is sent as JSON, so that its status can
        still say what went wrong).
        """
        as_json = self._answer_form(head)
        if modern and message.method == "subscriptions/listen":
            as_json = False  # a listen answer is a stream (its Accept was checked already)
        if as_json is None:
            await self._answer(send, head, Outcome.NOT_ACCEPTABLE)
            return
        if message.id in streams.requests:
            await self._answer(send, head, Outcome.REQUEST_ID_IN_USE)
            return
        stream = streams.open_request_stream(message.id, json=as_json)
        events = streams.attach(stream)
        priming = None
        if not as_json and streams.store is not None:
            priming = await streams.store.store(session.id, stream.name, b"")
        delivery = await session.deliver(Incoming(message, headers, token))
        if delivery is not Delivery.ACCEPTED:
            streams.detach(stream, events)
            streams.forget(stream)
            if priming is not None and streams.store is not None:  # a stream that never was
                await streams.store.forget_stream(session.id, stream.name)
            await self._answer(send, head, self.delivery_outcome(delivery))
            return
        response_headers = self._session_headers(head, None if session.stateless else session.id)
        self.host.stream_started()
        complete = False
        try:
            notice = _disconnect_notice(head)
            if as_json:
                await self._write_json(stream, events, receive, send, response_headers, modern=modern, notice=notice)
            elif modern:
                await self._write_deferred(stream, events, receive, send, response_headers, notice)
            else:
                first = encode_event("", id=priming, retry=self.retry_ms) if priming is not None else b""
                complete = await self._write_events(
                    stream, events, receive, send, response_headers, first, notice=notice
                )
        finally:
            streams.detach(stream, events)
            if complete and streams.store is not None:
                # Written to its end on this response: nobody will resume it.
                with trio.CancelScope(shield=True, deadline=trio.current_time() + 1.0):
                    await streams.store.forget_stream(session.id, stream.name)
            self.host.stream_ended()

    async def _write_json(
        self,
        stream: _Stream,
        events: ChannelReceiver[_Event],
        receive: Receive,
        send: Send,
        headers: list[tuple[bytes, bytes]],
        *,
        modern: bool = False,
        notice: DisconnectNotice | None = None,
    ) -> None:
        data = b""
        try:
            while True:
                event = await _next_event(stream, events, receive, notice=notice)
                if event is not None and event[2]:
                    data = event[1]
                    break
        except (trio.EndOfChannel, trio.ClosedResourceError):
            data = b""  # the session ended first
        except _ClientLeft:
            return None  # the request goes on; its answer is lost with the connection (JSON has no resume)
        if not data:
            return await _end_unanswered(send, headers)
        await self._send_json(send, modern_status(data) if modern else 200, data, headers)
        return None

    async def _write_deferred(
        self,
        stream: _Stream,
        events: ChannelReceiver[_Event],
        receive: Receive,
        send: Send,
        headers: list[tuple[bytes, bytes]],
        notice: DisconnectNotice | None = None,
    ) -> None:
        """A modern request's answer: JSON if the response comes first, else an event stream.

        Waits for the first event (at most one keepalive interval, then the
        stream starts so that proxies see bytes): a response that comes alone
        is sent as JSON with the status its error code calls for.
        """
        wait = self.keepalive_interval if self.keepalive_interval is not None else 15.0
        try:
            first = await _next_event(stream, events, receive, trio.current_time() + wait, notice)
        except (trio.EndOfChannel, trio.ClosedResourceError):
            await _end_unanswered(send, headers)
            return
        except _ClientLeft:
            return
        if first is not None and first[2]:
            if first[1]:
                await self._send_json(send, modern_status(first[1]), first[1], headers)
            else:
                await _end_unanswered(send, headers)
            return
        frame = b"data: " + first[1] + b"\n\n" if first is not None and first[1] else b""
        await self._write_events(stream, events, receive, send, headers, frame, notice=notice)

    async def _write_events(
        self,
        stream: _Stream,
        events: ChannelReceiver[_Event],
        receive: Receive,
        send: Send,
        headers: Sequence[tuple[bytes, bytes]],
        first: bytes,
        skip_through: int | None = None,
        notice: DisconnectNotice | None = None,
    ) -> bool:
        """Write an event stream from ``events`` until its final event (or the session's end).

        ``skip_through``: a resume already replayed the stream's events up to
        this sequence number; live events with ids at or below it are skipped.
        Returns whether the stream's final event went out on this response.
        """
        complete = False
        keepalive = self.keepalive_interval
        await send({"type": "http.response.start", "status": 200, "headers": [*_EVENT_STREAM_HEADERS, *headers]})
        if first:
            await send({"type": "http.response.body", "body": first, "more_body": True})
        due = math.inf if keepalive is None else trio.current_time() + keepalive
        while True:
            try:
                received = await _next_event(stream, events, receive, due, notice)
            except (trio.EndOfChannel, trio.ClosedResourceError):
                break
            except _ClientLeft:
                return False
            if keepalive is not None:
                due = trio.current_time() + keepalive
            if received is None:
                await send({"type": "http.response.body", "body": _KEEPALIVE, "more_body": True})
                continue
            event_id, data, final, reconnect = received
            if reconnect:
                break  # the client resumes with Last-Event-ID after the retry interval
            if data:
                if skip_through is not None and event_id is not None:
                    seq = _seq(event_id)
                    if seq is not None and seq <= skip_through:
                        continue
                frame = encode_event(data, id=event_id) if event_id is not None else b"data: " + data + b"\n\n"
                if final:  # the body ends with it: one send instead of two
                    await send({"type": "http.response.body", "body": frame, "more_body": False})
                    return True
                await send({"type": "http.response.body", "body": frame, "more_body": True})
            if final:
                complete = True
                break
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        return complete

    # -- GET -----------------------------------------------------------------------------------------------
    async def _serve_get(self, head: RequestHead, principal: str | None, receive: Receive, send: Send) -> None:
        found = self._session_of(head, principal)
        if found is None:
            await self._answer(send, head, Outcome.UNKNOWN_SESSION)
            return
        session, streams = found
        last_event_id = head.header(b"last-event-id")
        headers = self._session_headers(head, None if session.stateless else session.id)
        if last_event_id is not None:
            await self._resume(session, streams, last_event_id, head, receive, send, headers)
            return
        stream = streams.standalone
        if stream.writer is not None:
            await self._answer(send, head, Outcome.STREAM_CONFLICT)
            return
        first = b""
        if streams.store is not None:
            # Messages kept while nobody read the stream already sit behind a priming id of
            # their own (see _SessionStreams._route), so a resume from it includes them.
            priming = streams.standalone_mark or await streams.store.store(session.id, STANDALONE, b"")
            first = encode_event("", id=priming, retry=self.retry_ms)
        events = streams.attach(stream)
        self.host.stream_started()
        try:
            await self._write_events(stream, events, receive, send, headers, first, notice=_disconnect_notice(head))
        finally:
            streams.detach(stream, events)
            self.host.stream_ended()

    async def _resume(
        self,
        session: Session,
        streams: _SessionStreams,
        last_event_id: str,
        head: RequestHead,
        receive: Receive,
        send: Send,
        headers: list[tuple[bytes, bytes]],
    ) -> None:
        """GET with ``Last-Event-ID``: that stream's later events, then (if it goes on) live ones."""
        parsed = parse_event_id(last_event_id)
        if self.event_store is None or parsed is None:
            await self._answer(send, head, Outcome.UNKNOWN_EVENT_ID)
            return
        if parsed[0] == STANDALONE and streams.standalone.writer is not None:
            await self._answer(send, head, Outcome.STREAM_CONFLICT)
            return
        # A stream the store does not know (never stored, or forgotten once read to its end) is
        # refused before anything changes: an unknown id must not take a live stream's writer.
        replay = await self.event_store.replay(session.id, last_event_id)
        if replay is None:
            await self._answer(send, head, Outcome.UNKNOWN_EVENT_ID)
            return
        stream = streams.by_name.get(parsed[0])
        if stream is streams.standalone and stream.writer is not None:
            await self._answer(send, head, Outcome.STREAM_CONFLICT)  # another GET took it meanwhile
            return
        events = None
        if stream is not None and not stream.json:
            # Attach, then read the store again: what was routed while the first replay was read
            # is in the second, and what is routed from now on reaches this response (duplicates
            # are skipped by seq).
            events = streams.attach(stream)
            replay = await self.event_store.replay(session.id, last_event_id)
            if replay is None:
                streams.detach(stream, events)
                await self._answer(send, head, Outcome.UNKNOWN_EVENT_ID)
                return
        if not replay.complete:
            log.warning(
                "session %s: resuming stream %s after %s, some events were already dropped",
                session.id,
                replay.stream,
                last_event_id,
                extra={"event": "resume_incomplete", "session_id": session.id},
            )
        first = b"".join(
            encode_event(event.data, id=event.event_id) for event in replay.events if event.data
        )
        last_seq = max((seq for event in replay.events if (seq := _seq(event.event_id)) is not None), default=parsed[1])
        self.host.stream_started()
        complete = False
        try:
            if events is None or stream is None:
                # The stream is over (or was never ours to write): the replay is all there is.
                await send({"type": "http.response.start", "status": 200, "headers": [*_EVENT_STREAM_HEADERS, *headers]})
                await send({"type": "http.response.body", "body": first, "more_body": False})
                complete = stream is None  # it ended: this response carried what is left of it
                return
            complete = await self._write_events(
                stream, events, receive, send, headers, first, skip_through=last_seq, notice=_disconnect_notice(head)
            )
        finally:
            if events is not None and stream is not None:
                streams.detach(stream, events)
            if complete:
                # Written to its end on this response, like a request's own (_serve_request):
                # nobody will resume it, and a resume from it is now an unknown id (400).
                with trio.CancelScope(shield=True, deadline=trio.current_time() + 1.0):
                    await self.event_store.forget_stream(session.id, replay.stream)
            self.host.stream_ended()

    # -- DELETE ------------------------------------------------------------------------------------------
    async def _serve_delete(self, head: RequestHead, principal: str | None, send: Send) -> None:
        found = self._session_of(head, principal)
        if found is None:
            await self._answer(send, head, Outcome.UNKNOWN_SESSION)
            return
        session = found[0]
        await self.sessions.close_session(session, "deleted by the client")
        await send({"type": "http.response.start", "status": 200, "headers": [*_JSON_HEADERS, (b"content-length", b"0"), *self._cors_headers(head)]})
        await send({"type": "http.response.body", "body": b""})


def _seq(event_id: str) -> int | None:
    parsed = parse_event_id(event_id)
    return None if parsed is None else parsed[1]


class _ClientLeft(Exception):
    """The client of a response disconnected while it waited for its next event."""


async def _next_event(
    stream: _Stream,
    events: ChannelReceiver[_Event],
    receive: Receive,
    deadline: float = math.inf,
    notice: DisconnectNotice | None = None,
) -> _Event | None:
    """A response's next event from the router; ``None`` once ``deadline`` passed without one.

    One task per response does both waits, for its next event and for its
    client leaving, with no watcher task spawned and cancelled per request.
    With a server's :class:`DisconnectNotice` it waits on ``events`` alone: an
    event wakes it directly and the notice interrupts the wait.  Without one it
    waits for the client's ``http.disconnect`` in a cancel scope that the router
    cancels when it hands the stream an event (:meth:`_Stream.wake`).  Raises
    :class:`_ClientLeft`, or ``EndOfChannel`` when the stream's channel ends.
    """
    while True:
        try:
            return events.receive_nowait()
        except trio.WouldBlock:
            pass
        if deadline != math.inf and trio.current_time() >= deadline:
            return None
        if notice is not None:
            return await _next_event_or_notice(events, deadline, notice)
        # No checkpoint since the channel was found empty: no wake-up can have been missed.
        with trio.CancelScope(deadline=deadline) as waiting:
            stream.waiting = waiting
            try:
                while (await receive())["type"] != "http.disconnect":
                    pass
                raise _ClientLeft
            finally:
                if stream.waiting is waiting:
                    stream.waiting = None


async def _next_event_or_notice(events: ChannelReceiver[_Event], deadline: float, notice: DisconnectNotice) -> _Event | None:
    """:func:`_next_event`'s wait with a disconnect notice: the channel's, which the notice interrupts."""
    notice.watching()
    if notice.gone:
        raise _ClientLeft
    notice.callback = functools.partial(events.interrupt, _ClientLeft())
    try:
        if deadline == math.inf:
            return await events.receive()
        with trio.move_on_at(deadline):
            return await events.receive()
        return None
    finally:
        notice.callback = None


def _disconnect_notice(head: RequestHead) -> DisconnectNotice | None:
    """The server's disconnect notice for this request, if it gives one (``serve``'s HTTP/1.1 layer)."""
    scope = head.scope
    extensions = scope.get("extensions") if scope is not None else None
    notice = extensions.get(DISCONNECT_NOTICE) if extensions else None
    return notice if isinstance(notice, DisconnectNotice) else None


async def _end_unanswered(send: Send, headers: Sequence[tuple[bytes, bytes]]) -> None:
    """A JSON-mode request that ended without an answer (cancelled, or the session ended): 202, no body."""
    with contextlib.suppress(OSError):
        await send_accepted(send, headers)


def _has_envelope(message: Any) -> bool:
    """Whether a message carries the 2026-07-28 per-request ``_meta`` envelope (its protocol version)."""
    params = getattr(message, "params", None)
    meta = params.get("_meta") if isinstance(params, dict) else None
    return isinstance(meta, dict) and "io.modelcontextprotocol/protocolVersion" in meta
