"""``ClientSession``: the MCP client layer, over any transport that is a pair of channels.

Theory of operation
-------------------
A :class:`ClientSession` is used inside ``async with``, which owns a nursery
with two background tasks:

* the *receive loop* reads the transport's ``incoming`` channel in order and
  hands each message to the session's JSON-RPC :class:`~trio_mcp_sse._rpc.Peer`
  (the engine the server uses too).  A response or error wakes the request
  waiting for it (matched by id); a progress notification is handed to that
  request's progress callback right away, so every progress update is seen
  before the result it precedes; a request from the server (sampling,
  elicitation, roots, ping) runs as its own task, in its own cancel scope, so
  a slow human answering an elicitation blocks nothing and
  ``notifications/cancelled`` from the server can stop it;
* the *notification loop* runs user notification handlers one at a time, in
  arrival order, off the receive loop -- so a handler may itself await a
  request on this session without deadlocking it.  Its queue is bounded, so
  "look again" notifications (``list_changed``, ``resources/updated``)
  identical to one still queued are dropped: a burst of them, while a handler
  awaits a request, must not fill the queue and stall the receive loop in
  front of that request's answer.

A request (:meth:`ClientSession.send_request` and the typed methods built on
it) runs in the *caller's* task: it POSTs, then waits for its response, both
within one timeout.  If the caller is cancelled, or the timeout expires, after
the server may have seen the request, the session tells the server with
``notifications/cancelled`` (shielded, bounded): cancelling the Trio scope
around ``call_tool`` stops the tool on the server.  When the session closes or
the transport's channel ends, every waiting request fails at once with
:class:`ConnectionClosedError`; nothing waits for an answer that cannot come.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from types import TracebackType
from typing import Any, Final, Literal, Protocol, TypeAlias, TypeVar

import mcp_types
import orjson
import pydantic
import trio

from .._errors import MCPError
from .._jsonrpc import (
    INVALID_PARAMS,
    METHOD_NOT_FOUND,
    JSONRPCMessage,
    JSONRPCNotification,
    JSONRPCRequest,
    RequestId,
)
from .._protocol_versions import (
    HANDSHAKE_PROTOCOL_VERSIONS,
    LATEST_HANDSHAKE,
    MODERN_PROTOCOL_VERSIONS,
)
from .._rpc import CANCEL_NOTICE_TIMEOUT, Failures, Handler, Peer
from ._eras import (
    MODERN_PROTOCOL_VERSION,
    ProtocolChoice,
    check_protocol_choice,
    param_header_paths,
    probe_verdict,
    request_envelope,
)
from ._errors import (
    ClientError,
    ConnectionClosedError,
    ProtocolError,
    ProtocolVersionError,
    RequestTimeoutError,
)
from ._tasks import TASKS_EXTENSION, TaskInfo, TaskStatusCallback
from ._util import raise_collapsed

__all__ = [
    "LATEST_PROTOCOL_VERSION",
    "SUPPORTED_PROTOCOL_VERSIONS",
    "ClientSession",
    "ClientTransport",
    "ElicitationHandler",
    "NotificationHandler",
    "ProgressCallback",
    "RootsHandler",
    "SamplingHandler",
    "Subscription",
]

log = logging.getLogger("trio_mcp_sse.client")
server_log = logging.getLogger("trio_mcp_sse.client.server")

SUPPORTED_PROTOCOL_VERSIONS: Final = HANDSHAKE_PROTOCOL_VERSIONS
"""Protocol revisions this client can speak, oldest first (from :mod:`trio_mcp_sse._protocol_versions`)."""
LATEST_PROTOCOL_VERSION: Final = LATEST_HANDSHAKE

DEFAULT_MAX_INPUT_ROUNDS: Final = 8
"""How many ``InputRequiredResult`` answers one request may get before the client gives up."""

CANCEL_NOTIFY_TIMEOUT: Final = CANCEL_NOTICE_TIMEOUT
"""How long telling the server about a cancelled request may delay the cancellation."""
_NOTIFICATION_BUFFER: Final = 256
_COALESCED: Final = frozenset(
    {
        "notifications/tools/list_changed",
        "notifications/resources/list_changed",
        "notifications/prompts/list_changed",
        "notifications/resources/updated",
    }
)
"""Notifications that only say "look again": one still waiting for its handler covers
any identical one after it, so a burst of them cannot fill the handler queue."""

ProgressCallback: TypeAlias = Callable[[float, float | None, str | None], Awaitable[None]]
"""``async def on_progress(progress, total, message)``, for ``notifications/progress``."""
NotificationHandler: TypeAlias = Callable[[JSONRPCNotification], Awaitable[None]]
"""``async def handler(notification)``; ``notification.method`` and ``.params`` as sent."""
SamplingHandler: TypeAlias = Callable[
    [mcp_types.CreateMessageRequestParams],
    Awaitable[
        mcp_types.CreateMessageResult | mcp_types.CreateMessageResultWithTools | Mapping[str, Any]
    ],
]
ElicitationHandler: TypeAlias = Callable[
    [mcp_types.ElicitRequestFormParams | mcp_types.ElicitRequestURLParams],
    Awaitable[mcp_types.ElicitResult | Mapping[str, Any]],
]
RootsHandler: TypeAlias = Callable[[], Awaitable[mcp_types.ListRootsResult | Mapping[str, Any]]]

_ModelT = TypeVar("_ModelT", bound=pydantic.BaseModel)
_elicit_params = pydantic.TypeAdapter[
    mcp_types.ElicitRequestFormParams | mcp_types.ElicitRequestURLParams
](mcp_types.ElicitRequestParams)

_LOG_LEVELS: Final = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "notice": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
    "alert": logging.CRITICAL,
    "emergency": logging.CRITICAL,
}


class ClientTransport(Protocol):
    """What :class:`ClientSession` needs from a transport (:class:`SSEConnection` is one).

    ``incoming`` yields the peer's parsed messages and ends when the connection
    does; ``send`` delivers one encoded JSON-RPC message or raises;
    ``closed`` tells whether sending is still worth trying.
    """

    @property
    def incoming(self) -> trio.abc.ReceiveChannel[JSONRPCMessage]: ...

    @property
    def closed(self) -> bool: ...

    async def send(self, message: bytes, /) -> None: ...


def _timed_out(method: str, limit: float) -> RequestTimeoutError:
    return RequestTimeoutError(f"{method}: no response within {limit:g} s")


_FAILURES: Final = Failures(
    answered=MCPError,
    timed_out=_timed_out,
    closed=ConnectionClosedError,
    peer_gone=(ConnectionClosedError,),
)


def _dump(result: pydantic.BaseModel | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(result, pydantic.BaseModel):
        dumped: dict[str, Any] = result.model_dump(by_alias=True, mode="json", exclude_none=True)
        return dumped
    return dict(result)


def _first_problem(error: pydantic.ValidationError) -> str:
    first = error.errors(include_url=False, include_input=False)[0]
    where = ".".join(str(part) for part in first["loc"]) or "result"
    return f"{where}: {first['msg']}"


class Subscription:
    """A ``subscriptions/listen`` stream held open by :meth:`ClientSession.listen`.

    The notifications it carries go to the session's notification handlers,
    like any other; this object says what the server agreed to send and
    whether the stream is still open.
    """

    def __init__(self, request_id: RequestId) -> None:
        self.id = request_id
        """The JSON-RPC id of the ``subscriptions/listen`` request: the ``subscriptionId`` of its notifications."""
        self.acknowledged: dict[str, Any] | None = None
        """The notification types the server agreed to send (its acknowledgement), once it came."""
        self.error: BaseException | None = None
        """Why the stream ended, if it ended with an error."""
        self.closed = False
        """True once the server ended the stream (gracefully or not)."""
        self._changed = trio.Event()
        self._closed_event = trio.Event()

    def _acknowledge(self, notifications: Any) -> None:
        if self.acknowledged is None:
            self.acknowledged = dict(notifications) if isinstance(notifications, dict) else {}
            self._changed.set()

    def _close(self, error: BaseException | None) -> None:
        self.closed, self.error = True, error
        self._changed.set()
        self._closed_event.set()

    async def wait_closed(self) -> None:
        """Wait until the server ends the stream (it sends a result when it shuts down gracefully)."""
        await self._closed_event.wait()


class ClientSession:
    """An MCP client session over a connected transport (see ``docs/client.md``).

    Use it as ``async with ClientSession(connection) as session:`` and call
    :meth:`negotiate` (or :meth:`initialize`) first, or let
    :func:`open_session` do both.  Any number of tasks may issue requests on
    one session concurrently.
    """

    def __init__(
        self,
        transport: ClientTransport,
        *,
        client_name: str = "trio-mcp-sse",
        client_version: str | None = None,
        protocol: ProtocolChoice = "auto",
        protocol_version: str = LATEST_PROTOCOL_VERSION,
        request_timeout: float = 60.0,
        max_input_rounds: int = DEFAULT_MAX_INPUT_ROUNDS,
        sampling_handler: SamplingHandler | None = None,
        elicitation_handler: ElicitationHandler | None = None,
        roots_handler: RootsHandler | None = None,
        notification_handlers: Mapping[str, NotificationHandler] | None = None,
        extensions: Mapping[str, Mapping[str, Any]] | None = None,
        tasks: bool = False,
    ) -> None:
        self._protocol = check_protocol_choice(protocol)
        if max_input_rounds < 1:
            raise ValueError(f"max_input_rounds must be >= 1, got {max_input_rounds!r}")
        if protocol_version not in SUPPORTED_PROTOCOL_VERSIONS:
            raise ValueError(
                f"protocol_version must be one of {', '.join(SUPPORTED_PROTOCOL_VERSIONS)}, got {protocol_version!r}"
            )
        if not request_timeout > 0:
            raise ValueError(f"request_timeout must be > 0, got {request_timeout!r}")
        self._transport = transport
        self._client_info = {"name": client_name, "version": client_version or _package_version()}
        self._offered_version = protocol_version
        self._request_timeout = request_timeout
        self._sampling_handler = sampling_handler
        self._elicitation_handler = elicitation_handler
        self._roots_handler = roots_handler
        self._notification_handlers: dict[str, NotificationHandler] = dict(
            notification_handlers or {}
        )
        self._max_input_rounds = max_input_rounds
        self._extensions = {key: dict(value) for key, value in (extensions or {}).items()}
        if tasks:
            self._extensions.setdefault(TASKS_EXTENSION, {})
        self.initialize_result: mcp_types.InitializeResult | None = None
        """The server's answer to :meth:`initialize` (``None`` before)."""
        self.discover_result: mcp_types.DiscoverResult | None = None
        """The server's answer to :meth:`discover` (``None`` before, or in the handshake era)."""
        self._era: Literal["handshake", "modern"] | None = None
        self._modern_version = MODERN_PROTOCOL_VERSION
        self._server_info: mcp_types.Implementation | None = None
        self._log_level: str | None = None
        self._subscriptions: dict[RequestId, Subscription] = {}
        self._rpc = Peer(
            self._send,
            route=self._route,
            on_notification=self._on_notification,
            failures=_FAILURES,
            side="client",
            logger=log,
            # A POST abandoned halfway could reach the server after the
            # notifications/cancelled sent for it on another connection.
            let_send_finish=True,
        )
        self._progress: dict[str | int, ProgressCallback] = {}
        self._unhandled: set[tuple[str, bytes]] = set()
        # Counts for _notifications_handled: queued for the handlers, and handled.
        self._queued_notifications = 0
        self._handled_notifications = 0
        self._notification_handled = trio.Event()
        self._nursery: trio.Nursery | None = None
        self._close_reason: str | None = None
        self._context: AbstractAsyncContextManager[ClientSession] | None = None

    # -- what the server told us -------------------------------------------------------------
    @property
    def era(self) -> Literal["handshake", "modern"] | None:
        """``"modern"`` after :meth:`discover` (revision 2026-07-28 on), ``"handshake"`` after
        :meth:`initialize`, ``None`` before either."""
        return self._era

    @property
    def protocol_version(self) -> str | None:
        """The protocol version in use (``None`` before :meth:`negotiate` or :meth:`initialize`)."""
        if self._era == "modern":
            return self._modern_version
        return self.initialize_result.protocol_version if self.initialize_result else None

    @property
    def server_info(self) -> mcp_types.Implementation | None:
        if self._era == "modern":
            return self._server_info
        return self.initialize_result.server_info if self.initialize_result else None

    @property
    def server_capabilities(self) -> mcp_types.ServerCapabilities | None:
        if self.discover_result is not None and self._era == "modern":
            return self.discover_result.capabilities
        return self.initialize_result.capabilities if self.initialize_result else None

    @property
    def instructions(self) -> str | None:
        if self.discover_result is not None and self._era == "modern":
            return self.discover_result.instructions
        return self.initialize_result.instructions if self.initialize_result else None

    @property
    def closed(self) -> bool:
        return self._close_reason is not None

    # -- lifetime ----------------------------------------------------------------------------
    async def __aenter__(self) -> ClientSession:
        if self._context is not None or self._close_reason is not None:
            raise RuntimeError("a ClientSession can be entered only once")
        self._context = self._run()
        return await self._context.__aenter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool | None:
        assert self._context is not None
        return await self._context.__aexit__(exc_type, exc, traceback)

    @asynccontextmanager
    async def _run(self) -> AsyncIterator[ClientSession]:
        notify_send, notify_receive = trio.open_memory_channel[JSONRPCNotification](
            _NOTIFICATION_BUFFER
        )
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                self._rpc.start(nursery)
                nursery.start_soon(self._receive_loop, notify_send)
                nursery.start_soon(self._notification_loop, notify_receive)
                try:
                    yield self
                finally:
                    self._close("the session is closed")
                    nursery.cancel_scope.cancel()
        except BaseExceptionGroup as group:
            raise_collapsed(group)
        finally:
            self._nursery = None
            self._rpc.detach()

    def _close(self, reason: str) -> None:
        if self._close_reason is None:
            self._close_reason = reason
        self._rpc.close(self._close_reason)

    def _check_usable(self) -> None:
        if self._close_reason is not None:
            raise ConnectionClosedError(self._close_reason)
        if self._nursery is None:
            raise RuntimeError("use the session inside 'async with ClientSession(...)'")

    # -- requests ----------------------------------------------------------------------------
    async def send_request(
        self,
        method: str,
        params: Mapping[str, Any] | None = None,
        *,
        request_timeout: float | None = None,
        progress: ProgressCallback | None = None,
    ) -> dict[str, Any]:
        """Send any request and return its raw ``result``.

        Raises :class:`MCPError` when the server answers with an error,
        :class:`RequestTimeoutError` after ``request_timeout`` seconds (default:
        the session's), and :class:`SSEConnectionError` subclasses when the
        request cannot be delivered or the connection ends first.

        In the modern era every request carries the envelope (protocol
        version, client info and capabilities in ``_meta``), and an
        ``InputRequiredResult`` is answered here: the inputs it asks for are
        gathered with the session's handlers and the request is sent again, as
        a new request, with them and the server's ``requestState`` -- at most
        ``max_input_rounds`` times.  ``request_timeout`` bounds each round's
        wait for the server, not the time the handlers take.
        """
        await trio.lowlevel.checkpoint()  # a failing connection cancels us before we raise
        self._check_usable()
        limit = self._request_timeout if request_timeout is None else request_timeout
        if not limit > 0:
            raise ValueError(f"request_timeout must be > 0, got {limit!r}")
        if self._era != "modern":
            return await self._request_once(method, params, limit, progress)
        base = dict(params or {})
        retry: dict[str, Any] = {}
        for _ in range(self._max_input_rounds + 1):
            body = self._enveloped({**base, **retry}, self._modern_version)
            result = await self._request_once(method, body, limit, progress)
            if result.get("resultType") != "input_required":
                return result
            retry = await self._answer_input_required(method, result)
        raise ProtocolError(
            f"{method}: the server still asked for input after {self._max_input_rounds} rounds "
            "(max_input_rounds)"
        )

    async def _request_once(
        self,
        method: str,
        params: Mapping[str, Any] | None,
        limit: float,
        progress: ProgressCallback | None,
        request_id: RequestId | None = None,
    ) -> dict[str, Any]:
        """One JSON-RPC request and its ``result`` (a fresh id unless one is given)."""
        if request_id is None:
            request_id = self._rpc.new_request_id()
        body: dict[str, Any] | None = None
        if params is not None or progress is not None:
            body = dict(params or {})
            if progress is not None:
                body["_meta"] = {**body.get("_meta", {}), "progressToken": request_id}
                self._progress[request_id] = progress
        try:
            return await self._rpc.request(method, body, timeout=limit, request_id=request_id)
        finally:
            self._progress.pop(request_id, None)

    def _capabilities(self) -> dict[str, Any]:
        """What the handlers given let this client do: declared in ``initialize`` or in every envelope."""
        capabilities: dict[str, Any] = {}
        if self._sampling_handler is not None:
            capabilities["sampling"] = {}
        if self._elicitation_handler is not None:
            capabilities["elicitation"] = {}
        if self._roots_handler is not None:
            # The modern era has no client notifications, so no roots/list_changed.
            capabilities["roots"] = {"listChanged": True} if self._era != "modern" else {}
        if self._extensions:
            capabilities["extensions"] = {key: dict(value) for key, value in self._extensions.items()}
        return capabilities

    def _enveloped(self, params: Mapping[str, Any], version: str) -> dict[str, Any]:
        envelope = request_envelope(
            version,
            client_info=self._client_info,
            capabilities=self._capabilities(),
            log_level=self._log_level,
        )
        return {**params, "_meta": {**params.get("_meta", {}), **envelope}}

    async def _answer_input_required(
        self, method: str, result: Mapping[str, Any]
    ) -> dict[str, Any]:
        """The fields of the retry of an ``InputRequiredResult``: the answers and the state, echoed."""
        requests, state = result.get("inputRequests"), result.get("requestState")
        if requests is None and state is None:
            raise ProtocolError(
                f"{method}: the server's InputRequiredResult has neither inputRequests nor requestState"
            )
        if requests is not None and not isinstance(requests, dict):
            raise ProtocolError(f"{method}: the server's inputRequests is not an object")
        if state is not None and not isinstance(state, str):
            raise ProtocolError(f"{method}: the server's requestState is not a string")
        retry: dict[str, Any] = {}
        if requests is not None:
            retry["inputResponses"] = await self._gather_inputs(f"{method}: the server", requests)
        if state is not None:
            retry["requestState"] = state
        return retry

    async def _gather_inputs(self, asker: str, requests: Mapping[str, Any]) -> dict[str, Any]:
        """Answers to input requests (an ``InputRequiredResult``'s or a task's), by key, from the handlers."""
        answers: dict[str, Any] = {}
        # One at a time, in the server's order: several may ask the same person.
        for key, request in requests.items():
            wanted = request.get("method") if isinstance(request, dict) else None
            if wanted not in _INPUT_METHODS:
                raise ProtocolError(f"{asker} asked for input {key!r} of an unknown kind")
            try:
                answers[key] = await self._fulfil(str(wanted), request.get("params") or {})
            except MCPError as refused:
                raise ProtocolError(f"{asker} asked for input this client cannot give: {refused.message}") from None
        return answers

    async def _send(self, data: bytes, related_request_id: RequestId | None, final: bool = False) -> None:
        """The outgoing hook of the engine: one message to the transport.

        The client has one way out, so the routing hints are not needed; an
        empty final item (a server request we cancelled) has nothing to send.
        """
        if data:
            await self._transport.send(data)

    async def send_notification(self, method: str, params: Mapping[str, Any] | None = None) -> None:
        """Send a notification (no response is expected)."""
        await trio.lowlevel.checkpoint()
        self._check_usable()
        message: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            message["params"] = dict(params)
        await self._send(orjson.dumps(message), None)

    async def _typed(
        self,
        model: type[_ModelT],
        method: str,
        params: Mapping[str, Any] | None = None,
        *,
        request_timeout: float | None = None,
        progress: ProgressCallback | None = None,
    ) -> _ModelT:
        result = await self.send_request(
            method, params, request_timeout=request_timeout, progress=progress
        )
        try:
            return model.model_validate(result)
        except pydantic.ValidationError as invalid:
            raise ProtocolError(
                f"{method}: the server's result is not a valid {model.__name__}: {_first_problem(invalid)}"
            ) from None

    # -- the MCP methods ---------------------------------------------------------------------
    async def initialize(
        self, *, request_timeout: float | None = None
    ) -> mcp_types.InitializeResult:
        """Negotiate the protocol version and capabilities; call it once, first.

        Raises :class:`ProtocolVersionError` if the server picks a version this
        client does not speak.
        """
        if self.initialize_result is not None or self._era == "modern":
            raise RuntimeError("the session is already initialized")
        params = {
            "protocolVersion": self._offered_version,
            "capabilities": self._capabilities(),
            "clientInfo": self._client_info,
        }
        result = await self._typed(
            mcp_types.InitializeResult, "initialize", params, request_timeout=request_timeout
        )
        if result.protocol_version not in SUPPORTED_PROTOCOL_VERSIONS:
            raise ProtocolVersionError(
                f"the server chose protocol version {result.protocol_version!r}; "
                f"this client speaks {', '.join(SUPPORTED_PROTOCOL_VERSIONS)}"
            )
        self.initialize_result = result
        self._era = "handshake"
        await self.send_notification("notifications/initialized")
        return result

    async def discover(
        self, *, protocol_version: str = MODERN_PROTOCOL_VERSION, request_timeout: float | None = None
    ) -> mcp_types.DiscoverResult:
        """Ask the server what it is (``server/discover``) and speak the modern era from now on.

        Raises :class:`MCPError` when the server refuses (a handshake-era
        server does), and :class:`ProtocolVersionError` when it answers but
        lists no modern version this client speaks.
        """
        if self._era == "handshake":
            raise RuntimeError("the session is already initialized in the handshake era")
        self._check_usable()
        limit = self._request_timeout if request_timeout is None else request_timeout
        raw = await self._request_once(
            "server/discover", self._enveloped({}, protocol_version), limit, None
        )
        # A success answer to a modern request is itself the evidence of a
        # modern server (the specification's rule over HTTP): what it leaves
        # out means the version asked and no capabilities.
        raw = {"supportedVersions": [protocol_version], "capabilities": {}, **raw}
        try:
            result = mcp_types.DiscoverResult.model_validate(raw)
        except pydantic.ValidationError as invalid:
            raise ProtocolError(
                f"server/discover: the server's result is not a valid DiscoverResult: {_first_problem(invalid)}"
            ) from None
        mutual = [version for version in MODERN_PROTOCOL_VERSIONS if version in result.supported_versions]
        if not mutual:
            raise ProtocolVersionError(
                f"the server supports protocol versions {', '.join(result.supported_versions)}; "
                f"the modern era of this client speaks {', '.join(MODERN_PROTOCOL_VERSIONS)}"
            )
        self.discover_result = result
        self._modern_version = protocol_version if protocol_version in mutual else mutual[-1]
        self._server_info = _server_info_in(raw)
        self._era = "modern"
        return result

    async def negotiate(self, *, request_timeout: float | None = None) -> None:
        """Start speaking the newest era both sides speak, as the ``protocol`` option says.

        ``"handshake"``: :meth:`initialize`.  ``"2026-07-28"``: :meth:`discover`,
        asking once more at the version an UnsupportedProtocolVersion error names.
        ``"auto"``: the same, but anything other than a recognised modern
        error or answer means a handshake-era server, so :meth:`initialize`
        follows (see ``docs/client.md``).  Transport failures always raise.
        """
        if self._protocol == "handshake" or not await self._probe_modern(request_timeout):
            await self.initialize(request_timeout=request_timeout)

    async def _probe_modern(self, request_timeout: float | None) -> bool:
        """Try the modern era (:meth:`discover`): True once in it, False for a handshake-era server.

        False only with ``protocol="auto"``; otherwise that case raises
        :class:`ProtocolVersionError`.
        """
        version = MODERN_PROTOCOL_VERSION
        for attempt in range(2):
            try:
                await self.discover(protocol_version=version, request_timeout=request_timeout)
                return True
            except MCPError as refused:
                verdict, named = probe_verdict(refused, may_retry=attempt == 0)
                if verdict == "retry" and named is not None:
                    version = named
                    continue
                if self._protocol != "auto":
                    raise ProtocolVersionError(
                        f"the server does not speak protocol {version}: {refused}"
                    ) from refused
            except (ProtocolVersionError, ProtocolError):
                if self._protocol != "auto":
                    raise
            log.debug("the server does not speak the modern era; falling back to initialize")
            return False
        raise AssertionError("unreachable: the loop returns or raises")  # pragma: no cover

    @asynccontextmanager
    async def listen(
        self,
        *,
        tools_list_changed: bool = False,
        prompts_list_changed: bool = False,
        resources_list_changed: bool = False,
        resource_subscriptions: Sequence[str] = (),
        task_ids: Sequence[str] = (),
        acknowledge_timeout: float | None = None,
    ) -> AsyncIterator[Subscription]:
        """Hold a ``subscriptions/listen`` stream open for the block (modern era only).

        Opts in to the notification types named; they arrive at the session's
        notification handlers.  Entering waits (at most ``acknowledge_timeout``,
        default the session's request timeout) for the server's
        acknowledgement; leaving closes the stream, which ends the
        subscription.  The handshake era's equivalents are the standalone
        stream (opened by the transport) and :meth:`subscribe_resource`.
        ``task_ids`` (a session with ``tasks=True``): ``notifications/tasks``
        with each task's whole state at once and after every change; the
        acknowledgement's ``taskIds`` are those the server agreed to (its own
        tasks of this caller, still kept).
        """
        self._check_usable()
        if self._era != "modern":
            raise RuntimeError(
                "subscriptions/listen is a 2026-07-28 method; in the handshake era notifications "
                "arrive without it (use subscribe_resource for resource updates)"
            )
        wanted: dict[str, Any] = {}
        for key, value in (
            ("toolsListChanged", tools_list_changed),
            ("promptsListChanged", prompts_list_changed),
            ("resourcesListChanged", resources_list_changed),
        ):
            if value:
                wanted[key] = True
        if resource_subscriptions:
            wanted["resourceSubscriptions"] = [str(uri) for uri in resource_subscriptions]
        if task_ids:
            wanted["taskIds"] = [str(task_id) for task_id in task_ids]
        subscription = Subscription(self._rpc.new_request_id())
        body = self._enveloped({"notifications": wanted}, self._modern_version)
        limit = self._request_timeout if acknowledge_timeout is None else acknowledge_timeout
        self._subscriptions[subscription.id] = subscription
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._hold_subscription, subscription, body)
                with trio.move_on_after(limit):
                    await subscription._changed.wait()
                try:
                    if subscription.error is not None:
                        raise subscription.error
                    if subscription.acknowledged is None and not subscription.closed:
                        raise _timed_out("subscriptions/listen (acknowledgement)", limit)
                    yield subscription
                finally:
                    nursery.cancel_scope.cancel()
        except BaseExceptionGroup as group:
            raise_collapsed(group)
        finally:
            self._subscriptions.pop(subscription.id, None)

    async def _hold_subscription(self, subscription: Subscription, body: dict[str, Any]) -> None:
        """Wait for the listen request's result: it comes only when the server ends the stream."""
        try:
            await self._request_once("subscriptions/listen", body, math.inf, None, subscription.id)
        except (MCPError, ClientError) as error:
            subscription._close(error)
        else:
            subscription._close(None)

    async def ping(self, *, request_timeout: float | None = None) -> None:
        """Check the server answers (an empty result)."""
        await self.send_request("ping", request_timeout=request_timeout)

    async def list_tools(
        self, cursor: str | None = None, *, request_timeout: float | None = None
    ) -> mcp_types.ListToolsResult:
        """One page of tools; pass ``result.next_cursor`` back as ``cursor`` for the next.

        In the modern era a tool whose ``x-mcp-header`` annotations break the
        rules is left out (with a warning): its calls could not carry the
        headers the server checks, and one bad tool must not spoil the rest.
        """
        result = await self._typed(
            mcp_types.ListToolsResult, "tools/list", _page(cursor), request_timeout=request_timeout
        )
        if self._era != "modern":
            return result
        kept = []
        for tool in result.tools:
            try:
                param_header_paths(tool.input_schema)
            except ValueError as invalid:
                log.warning("leaving out tool %r: %s", tool.name, invalid)
                continue
            kept.append(tool)
        return result.model_copy(update={"tools": kept})

    async def call_tool(
        self,
        name: str,
        arguments: Mapping[str, Any] | None = None,
        *,
        progress: ProgressCallback | None = None,
        request_timeout: float | None = None,
        on_task_status: TaskStatusCallback | None = None,
    ) -> mcp_types.CallToolResult:
        """Call a tool.  A tool that fails returns a result with ``is_error=True``; it does not raise.

        When the server answers with a task (the session declared the tasks
        extension, ``tasks=True``), the task is polled to its end and its
        result returned: the call looks the same either way.  Its questions
        are answered with the session's handlers; ``on_task_status`` sees each
        state on the way; a failed task raises its JSON-RPC error as
        :class:`MCPError`, a cancelled one :class:`MCPError` -32800.
        Cancelling the call (a Trio cancel scope) cancels the task too.
        ``request_timeout`` bounds each request, not the task.
        """
        started = await self.start_tool(name, arguments, progress=progress, request_timeout=request_timeout)
        if isinstance(started, mcp_types.CallToolResult):
            return started
        try:
            finished = await self.wait_task(started.task_id, on_status=on_task_status, request_timeout=request_timeout)
        except BaseException:  # cancelled, or the polling failed: nobody waits for the task any more
            await self._cancel_abandoned(started.task_id)
            raise
        return finished.raise_for_status()

    async def start_tool(
        self,
        name: str,
        arguments: Mapping[str, Any] | None = None,
        *,
        progress: ProgressCallback | None = None,
        request_timeout: float | None = None,
    ) -> mcp_types.CallToolResult | TaskInfo:
        """Call a tool and return at once what the server answered: the result, or the task it started.

        A :class:`TaskInfo` comes back only from a session with ``tasks=True``
        (and a server that chose to start one); follow it with
        :meth:`get_task`, :meth:`wait_task`, :meth:`update_task` and
        :meth:`cancel_task`.
        """
        params = {"name": name, "arguments": dict(arguments or {})}
        result = await self.send_request("tools/call", params, request_timeout=request_timeout, progress=progress)
        if result.get("resultType") == "task":
            if not self.declares_tasks:
                raise ProtocolError("tools/call: the server answered with a task, which this session did not accept")
            return TaskInfo.from_wire("tools/call", result)
        try:
            return mcp_types.CallToolResult.model_validate(result)
        except pydantic.ValidationError as invalid:
            raise ProtocolError(
                f"tools/call: the server's result is not a valid CallToolResult: {_first_problem(invalid)}"
            ) from None

    @property
    def declares_tasks(self) -> bool:
        """The session declares the tasks extension (``tasks=True``): a tool call may become a task."""
        return TASKS_EXTENSION in self._extensions

    async def get_task(self, task_id: str, *, request_timeout: float | None = None) -> TaskInfo:
        """``tasks/get``: the task's state now (its result or error inlined once it ended)."""
        result = await self.send_request("tasks/get", {"taskId": task_id}, request_timeout=request_timeout)
        task = TaskInfo.from_wire("tasks/get", result)
        if task.task_id != task_id:
            raise ProtocolError(f"tasks/get: asked for task {task_id}, the server answered about {task.task_id}")
        return task

    async def update_task(
        self, task_id: str, input_responses: Mapping[str, Any], *, request_timeout: float | None = None
    ) -> None:
        """``tasks/update``: answers to a task's ``inputRequests``, by key (the server ignores unknown keys)."""
        await self.send_request(
            "tasks/update", {"taskId": task_id, "inputResponses": dict(input_responses)}, request_timeout=request_timeout
        )

    async def cancel_task(self, task_id: str, *, request_timeout: float | None = None) -> None:
        """``tasks/cancel``: ask the server to stop the task (it may still complete; poll to see)."""
        await self.send_request("tasks/cancel", {"taskId": task_id}, request_timeout=request_timeout)

    async def wait_task(
        self,
        task_id: str,
        *,
        on_status: TaskStatusCallback | None = None,
        answer_inputs: bool = True,
        request_timeout: float | None = None,
    ) -> TaskInfo:
        """Poll the task until it ends; return its last state (see :meth:`TaskInfo.raise_for_status`).

        Polls are ``pollIntervalMs`` apart.  With ``answer_inputs`` the
        questions of an ``input_required`` task are answered with the
        session's handlers (each key once) and sent with ``tasks/update``;
        without, the wait returns at ``input_required`` too, for the caller to
        answer.  ``on_status`` is called with every state that differs from the
        one before.  Ends with :class:`MCPError` -32602 if the server forgets
        the task first (its TTL ended).
        """
        answered: set[str] = set()
        seen: TaskInfo | None = None
        while True:
            task = await self.get_task(task_id, request_timeout=request_timeout)
            if on_status is not None and (seen is None or seen.changed_to(task)):
                await on_status(task)
            seen = task
            if task.terminal:
                return task
            if task.status == "input_required":
                if not answer_inputs:
                    return task
                pending = {key: request for key, request in task.input_requests.items() if key not in answered}
                if pending:
                    answers = await self._gather_inputs(f"tasks/get: the task {task_id}", pending)
                    answered.update(answers)
                    await self.update_task(task_id, answers, request_timeout=request_timeout)
                    continue
            await trio.sleep(task.poll_interval)

    async def _cancel_abandoned(self, task_id: str) -> None:
        """A caller stopped waiting for the task: tell the server, briefly and whatever happens."""
        with trio.CancelScope(shield=True), trio.move_on_after(_ABANDON_TIMEOUT):
            try:
                await self.cancel_task(task_id, request_timeout=_ABANDON_TIMEOUT)
            except (ClientError, MCPError) as failed:
                log.debug("could not cancel abandoned task %s: %s", task_id, failed)

    async def list_resources(
        self, cursor: str | None = None, *, request_timeout: float | None = None
    ) -> mcp_types.ListResourcesResult:
        return await self._typed(
            mcp_types.ListResourcesResult,
            "resources/list",
            _page(cursor),
            request_timeout=request_timeout,
        )

    async def list_resource_templates(
        self, cursor: str | None = None, *, request_timeout: float | None = None
    ) -> mcp_types.ListResourceTemplatesResult:
        return await self._typed(
            mcp_types.ListResourceTemplatesResult,
            "resources/templates/list",
            _page(cursor),
            request_timeout=request_timeout,
        )

    async def read_resource(
        self, uri: str, *, request_timeout: float | None = None
    ) -> mcp_types.ReadResourceResult:
        return await self._typed(
            mcp_types.ReadResourceResult,
            "resources/read",
            {"uri": str(uri)},
            request_timeout=request_timeout,
        )

    async def subscribe_resource(self, uri: str, *, request_timeout: float | None = None) -> None:
        """Ask to be sent ``notifications/resources/updated`` when ``uri`` changes.

        Handle those with a notification handler; servers announce support
        with ``server_capabilities.resources.subscribe``.
        """
        await self.send_request(
            "resources/subscribe", {"uri": str(uri)}, request_timeout=request_timeout
        )

    async def unsubscribe_resource(self, uri: str, *, request_timeout: float | None = None) -> None:
        """Stop the updates :meth:`subscribe_resource` asked for."""
        await self.send_request(
            "resources/unsubscribe", {"uri": str(uri)}, request_timeout=request_timeout
        )

    async def list_prompts(
        self, cursor: str | None = None, *, request_timeout: float | None = None
    ) -> mcp_types.ListPromptsResult:
        return await self._typed(
            mcp_types.ListPromptsResult,
            "prompts/list",
            _page(cursor),
            request_timeout=request_timeout,
        )

    async def get_prompt(
        self,
        name: str,
        arguments: Mapping[str, str] | None = None,
        *,
        request_timeout: float | None = None,
    ) -> mcp_types.GetPromptResult:
        params: dict[str, Any] = {"name": name}
        if arguments is not None:
            params["arguments"] = dict(arguments)
        return await self._typed(
            mcp_types.GetPromptResult, "prompts/get", params, request_timeout=request_timeout
        )

    async def complete(
        self,
        ref: Mapping[str, Any] | mcp_types.PromptReference | mcp_types.ResourceTemplateReference,
        argument: str,
        value: str,
        *,
        context: Mapping[str, str] | None = None,
        request_timeout: float | None = None,
    ) -> mcp_types.CompleteResult:
        """Suggestions for one argument of a prompt or resource template (``completion/complete``).

        ``ref`` is ``{"type": "ref/prompt", "name": PROMPT}`` or
        ``{"type": "ref/resource", "uri": URI_TEMPLATE}``; ``value`` is what
        the user typed so far; ``context`` the arguments already chosen, so a
        server can narrow its suggestions.
        """
        params: dict[str, Any] = {
            "ref": _dump(ref),
            "argument": {"name": argument, "value": value},
        }
        if context is not None:
            params["context"] = {"arguments": dict(context)}
        return await self._typed(
            mcp_types.CompleteResult, "completion/complete", params, request_timeout=request_timeout
        )

    async def set_logging_level(self, level: str, *, request_timeout: float | None = None) -> None:
        """Ask the server to send log messages of ``level`` and above (``logging/setLevel``).

        In the modern era there is no such method: the level is remembered
        and sent in the envelope of every later request instead.
        """
        if self._era == "modern":
            await trio.lowlevel.checkpoint()
            self._log_level = level
            return
        await self.send_request(
            "logging/setLevel", {"level": level}, request_timeout=request_timeout
        )

    async def send_roots_list_changed(self) -> None:
        """Tell the server the roots changed, so it asks for them again."""
        await self.send_notification("notifications/roots/list_changed")

    def set_notification_handler(self, method: str, handler: NotificationHandler | None) -> None:
        """Handle notifications named ``method`` (``"*"``: any without its own handler); ``None`` removes."""
        if handler is None:
            self._notification_handlers.pop(method, None)
        else:
            self._notification_handlers[method] = handler

    # -- receiving ---------------------------------------------------------------------------
    async def _receive_loop(
        self, notifications: trio.MemorySendChannel[JSONRPCNotification]
    ) -> None:
        async with notifications:
            try:
                async for message in self._transport.incoming:
                    await self._rpc.dispatch(message, notifications)
            except (trio.ClosedResourceError, trio.BrokenResourceError):
                pass
            self._close("the connection closed")

    async def _on_notification(
        self, notification: JSONRPCNotification, queue: trio.MemorySendChannel[JSONRPCNotification]
    ) -> None:
        params = notification.params or {}
        if notification.method == "notifications/subscriptions/acknowledged":
            meta = params.get("_meta")
            subscription_id = meta.get(_SUBSCRIPTION_ID) if isinstance(meta, dict) else None
            subscription = (
                self._subscriptions.get(subscription_id)
                if isinstance(subscription_id, str | int)
                else None
            )
            if subscription is not None:
                subscription._acknowledge(params.get("notifications"))
        if notification.method == "notifications/progress":
            token = params.get("progressToken")
            callback = self._progress.get(token) if isinstance(token, str | int) else None
            if callback is not None:
                await self._report_progress(callback, params)
                return
        # A handler may be awaiting a request whose answer is behind this
        # notification: a queue filled by a burst of announcements would stall
        # the receive loop, and with it that answer.  Identical "look again"
        # notifications not yet handled are one.
        key = _coalescing_key(notification)
        if key is not None:
            if key in self._unhandled:
                return
            self._unhandled.add(key)
        self._queued_notifications += 1
        await queue.send(notification)

    async def _report_progress(self, callback: ProgressCallback, params: Mapping[str, Any]) -> None:
        progress, total, message = (
            params.get("progress"),
            params.get("total"),
            params.get("message"),
        )
        if not isinstance(progress, int | float):
            log.debug("ignoring a progress notification without a numeric progress: %r", params)
            return
        try:
            await callback(
                float(progress),
                float(total) if isinstance(total, int | float) else None,
                message if isinstance(message, str) else None,
            )
        except Exception:
            log.exception("progress callback failed")

    async def _notification_loop(
        self, notifications: trio.MemoryReceiveChannel[JSONRPCNotification]
    ) -> None:
        try:
            async for notification in notifications:
                await self._handle_notification(notification)
                self._handled_notifications += 1
                self._notification_handled.set()
                self._notification_handled = trio.Event()
        finally:
            # No more will be handled: nobody may wait for them.
            self._handled_notifications = self._queued_notifications = -1
            self._notification_handled.set()

    async def _handle_notification(self, notification: JSONRPCNotification) -> None:
        key = _coalescing_key(notification)
        if key is not None:
            self._unhandled.discard(key)
        handler = self._notification_handlers.get(
            notification.method
        ) or self._notification_handlers.get("*")
        if handler is None:
            if notification.method == "notifications/message":
                _log_server_message(notification.params or {})
            return
        try:
            await handler(notification)
        except Exception:
            log.exception("notification handler for %s failed", notification.method)

    async def _notifications_handled(self) -> None:
        """Wait until the handlers are done with every notification received so far.

        Handlers run on a task of their own, so a request's result (or a
        progress callback, which runs on the receive loop) can reach its caller
        before a notification that arrived ahead of it was handled.  A caller
        that must keep the arrival order -- the command line prints log lines
        and progress on stderr, then the result -- waits here first.  Never from
        a notification handler: it would wait for itself.
        """
        target = self._queued_notifications
        while 0 <= self._handled_notifications < target:
            await self._notification_handled.wait()
        await trio.lowlevel.checkpoint()

    # -- requests from the server ------------------------------------------------------------
    def _route(self, request: JSONRPCRequest, extra: object) -> Handler:
        # Every answer is a POST, so even a refusal runs as a task, never in the receive loop.
        return functools.partial(self._answer, request)

    async def _answer(self, request: JSONRPCRequest) -> dict[str, Any]:
        return await self._fulfil(request.method, request.params or {})

    async def _fulfil(self, method: str, params: Mapping[str, Any]) -> dict[str, Any]:
        """Answer a server's request with the session's handlers.

        The one place both eras get sampling, elicitation and roots from: a
        handshake-era server request, or an input request of a modern
        ``InputRequiredResult``.
        """
        result: pydantic.BaseModel | Mapping[str, Any]
        try:
            if method == "ping":
                result = {}
            elif method == "sampling/createMessage" and self._sampling_handler is not None:
                sampling = mcp_types.CreateMessageRequestParams.model_validate(params)
                result = await self._sampling_handler(sampling)
            elif method == "elicitation/create" and self._elicitation_handler is not None:
                elicitation = _elicit_params.validate_python(params)
                result = await self._elicitation_handler(elicitation)
            elif method == "roots/list" and self._roots_handler is not None:
                result = await self._roots_handler()
            else:
                raise MCPError(METHOD_NOT_FOUND, _unsupported(method))
        except pydantic.ValidationError as invalid:
            raise MCPError(
                INVALID_PARAMS, f"Invalid params for {method}: {_first_problem(invalid)}"
            ) from None
        return _dump(result)


_ABANDON_TIMEOUT: Final = 5.0
"""Seconds to tell the server a task nobody waits for any more should stop."""
_INPUT_METHODS: Final = frozenset({"sampling/createMessage", "elicitation/create", "roots/list"})
"""What an ``InputRequiredResult`` may ask for."""
_SUBSCRIPTION_ID: Final = "io.modelcontextprotocol/subscriptionId"


def _server_info_in(result: Mapping[str, Any]) -> mcp_types.Implementation | None:
    """The server's self-description in a modern result: ``_meta``'s serverInfo (or a top-level one)."""
    meta = result.get("_meta")
    info = meta.get(mcp_types.SERVER_INFO_META_KEY) if isinstance(meta, dict) else None
    if info is None:
        info = result.get("serverInfo")
    try:
        return mcp_types.Implementation.model_validate(info) if info is not None else None
    except pydantic.ValidationError:
        return None


def _package_version() -> str:
    from .. import __version__

    return __version__


def _unsupported(method: str) -> str:
    feature = {
        "sampling/createMessage": "sampling",
        "elicitation/create": "elicitation",
        "roots/list": "roots",
    }
    if method in feature:
        return f"Method not found: this client does not support {feature[method]} ({method})"
    return f"Method not found: {method}"


def _coalescing_key(notification: JSONRPCNotification) -> tuple[str, bytes] | None:
    if notification.method not in _COALESCED:
        return None
    return notification.method, orjson.dumps(notification.params, option=orjson.OPT_SORT_KEYS)


def _page(cursor: str | None) -> dict[str, Any] | None:
    return None if cursor is None else {"cursor": cursor}


def _log_server_message(params: Mapping[str, Any]) -> None:
    level = _LOG_LEVELS.get(str(params.get("level")), logging.INFO)
    logger = params.get("logger")
    server_log.log(
        level, "%s%s", f"[{logger}] " if isinstance(logger, str) else "", params.get("data")
    )
