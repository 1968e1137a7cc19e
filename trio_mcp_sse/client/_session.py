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
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from types import TracebackType
from typing import Any, Final, Protocol, TypeAlias, TypeVar

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
from .._protocol_versions import HANDSHAKE_PROTOCOL_VERSIONS, LATEST_HANDSHAKE
from .._rpc import CANCEL_NOTICE_TIMEOUT, Failures, Handler, Peer
from ._errors import (
    ConnectionClosedError,
    ProtocolError,
    ProtocolVersionError,
    RequestTimeoutError,
)
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
]

log = logging.getLogger("trio_mcp_sse.client")
server_log = logging.getLogger("trio_mcp_sse.client.server")

SUPPORTED_PROTOCOL_VERSIONS: Final = HANDSHAKE_PROTOCOL_VERSIONS
"""Protocol revisions this client can speak, oldest first (from :mod:`trio_mcp_sse._protocol_versions`)."""
LATEST_PROTOCOL_VERSION: Final = LATEST_HANDSHAKE

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


class ClientSession:
    """An MCP client session over a connected transport (see ``docs/client.md``).

    Use it as ``async with ClientSession(connection) as session:`` and call
    :meth:`initialize` first, or let :func:`open_session` do both.  Any number
    of tasks may issue requests on one session concurrently.
    """

    def __init__(
        self,
        transport: ClientTransport,
        *,
        client_name: str = "trio-mcp-sse",
        client_version: str | None = None,
        protocol_version: str = LATEST_PROTOCOL_VERSION,
        request_timeout: float = 60.0,
        sampling_handler: SamplingHandler | None = None,
        elicitation_handler: ElicitationHandler | None = None,
        roots_handler: RootsHandler | None = None,
        notification_handlers: Mapping[str, NotificationHandler] | None = None,
    ) -> None:
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
        self.initialize_result: mcp_types.InitializeResult | None = None
        """The server's answer to :meth:`initialize` (``None`` before)."""
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
        self._nursery: trio.Nursery | None = None
        self._close_reason: str | None = None
        self._context: AbstractAsyncContextManager[ClientSession] | None = None

    # -- what the server told us -------------------------------------------------------------
    @property
    def protocol_version(self) -> str | None:
        """The negotiated protocol version (``None`` before :meth:`initialize`)."""
        return self.initialize_result.protocol_version if self.initialize_result else None

    @property
    def server_info(self) -> mcp_types.Implementation | None:
        return self.initialize_result.server_info if self.initialize_result else None

    @property
    def server_capabilities(self) -> mcp_types.ServerCapabilities | None:
        return self.initialize_result.capabilities if self.initialize_result else None

    @property
    def instructions(self) -> str | None:
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
        """
        await trio.lowlevel.checkpoint()  # a failing connection cancels us before we raise
        self._check_usable()
        limit = self._request_timeout if request_timeout is None else request_timeout
        if not limit > 0:
            raise ValueError(f"request_timeout must be > 0, got {limit!r}")
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
        if self.initialize_result is not None:
            raise RuntimeError("the session is already initialized")
        capabilities: dict[str, Any] = {}
        if self._sampling_handler is not None:
            capabilities["sampling"] = {}
        if self._elicitation_handler is not None:
            capabilities["elicitation"] = {}
        if self._roots_handler is not None:
            capabilities["roots"] = {"listChanged": True}
        params = {
            "protocolVersion": self._offered_version,
            "capabilities": capabilities,
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
        await self.send_notification("notifications/initialized")
        return result

    async def ping(self, *, request_timeout: float | None = None) -> None:
        """Check the server answers (an empty result)."""
        await self.send_request("ping", request_timeout=request_timeout)

    async def list_tools(
        self, cursor: str | None = None, *, request_timeout: float | None = None
    ) -> mcp_types.ListToolsResult:
        """One page of tools; pass ``result.next_cursor`` back as ``cursor`` for the next."""
        return await self._typed(
            mcp_types.ListToolsResult, "tools/list", _page(cursor), request_timeout=request_timeout
        )

    async def call_tool(
        self,
        name: str,
        arguments: Mapping[str, Any] | None = None,
        *,
        progress: ProgressCallback | None = None,
        request_timeout: float | None = None,
    ) -> mcp_types.CallToolResult:
        """Call a tool.  A tool that fails returns a result with ``is_error=True``; it does not raise."""
        params = {"name": name, "arguments": dict(arguments or {})}
        return await self._typed(
            mcp_types.CallToolResult,
            "tools/call",
            params,
            request_timeout=request_timeout,
            progress=progress,
        )

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
        """Ask the server to send log messages of ``level`` and above (``logging/setLevel``)."""
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
        async for notification in notifications:
            key = _coalescing_key(notification)
            if key is not None:
                self._unhandled.discard(key)
            handler = self._notification_handlers.get(
                notification.method
            ) or self._notification_handlers.get("*")
            if handler is None:
                if notification.method == "notifications/message":
                    _log_server_message(notification.params or {})
                continue
            try:
                await handler(notification)
            except Exception:
                log.exception("notification handler for %s failed", notification.method)

    # -- requests from the server ------------------------------------------------------------
    def _route(self, request: JSONRPCRequest, extra: object) -> Handler:
        # Every answer is a POST, so even a refusal runs as a task, never in the receive loop.
        return functools.partial(self._answer, request)

    async def _answer(self, request: JSONRPCRequest) -> dict[str, Any]:
        method, params = request.method, request.params or {}
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
