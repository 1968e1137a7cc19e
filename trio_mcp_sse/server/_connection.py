"""One MCP session as seen by the server layer: lifecycle, capabilities, and the way out.

Theory of operation
-------------------
:meth:`ServerConnection.run` is the session task's body.  It owns a nursery
and feeds the session's inbound channel, in order, to its JSON-RPC
:class:`~trio_mcp_sse._rpc.Peer`, which does what is not MCP-specific: ids,
waiting for the client's answers, one cancel scope per request, errors.  What
stays here is the server's own:

* the route: ``ping`` and ``initialize`` are answered inline (cheap, and
  ``initialize`` must be settled before anything after it is looked at), and
  so are the lifecycle refusals (nothing but ``ping`` before ``initialize``,
  no second ``initialize``, unknown methods get -32601): a refused request
  costs no task.  Every other request runs as its own task in the nursery,
  inside its own cancel scope (``in_flight``), so a slow tool never blocks a
  ping and ``notifications/cancelled`` cancels exactly one request;
* notifications: one with a handler registered on the server runs that
  handler as a task, inside its own error boundary;
* the session's state (negotiated version, client capabilities, log level,
  subscriptions, and :attr:`ServerConnection.state`, the application's own) and
  the catalog subscription that brings list_changed and resource updates to
  this client;
* :meth:`ServerConnection._send`, the one way out: everything the server sends
  on this session is queued there, with the id of the client request it
  belongs to.

A request task sends exactly one response unless the client cancelled it.  An
exception in a handler becomes a JSON-RPC error for that request only (-32603,
traceback logged once; a tool's exception becomes an ``isError`` result); the
session lives on.  When the inbound channel ends (the server drains) the
requests already accepted finish and answer before :meth:`run` returns, while
our own requests to the client fail at once (their answers can no longer
arrive).  When the session ends (client gone, server stopping) the session's
cancel scope reaches every request task: nothing outlives the session,
nothing waits for it forever.

Everything the server sends goes through the session's bounded outbound
channel, so the order in which a task queues messages is the order the client
sees them: a tool's progress notifications always precede its result.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol, TypeAlias

import trio

from .._errors import (
    ClientCapabilityError,
    ClientRequestError,
    ClientRequestTimeout,
    MCPError,
    ResourceNotFound,
)
from .._jsonrpc import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    JSONRPCNotification,
    JSONRPCRequest,
    RequestId,
)
from .._protocol_versions import UNANNOUNCED_HTTP_VERSION, is_modern_request
from .._rpc import Failures, Handler, Peer
from .._session import Incoming, Session, SessionClosed
from . import _modern
from ._catalog import Catalog
from ._context import Context
from ._input import InputRequired, InputRound, RequestStateKey, request_binding
from ._mount import Composition
from ._protocol import (
    LATEST_PROTOCOL_VERSION,
    LOG_LEVELS,
    SUPPORTED_PROTOCOL_VERSIONS,
    CachePolicy,
    version_at_least,
)
from ._tasks import TaskStore

__all__ = ["NotificationHandler", "RequestHandler", "ServerConnection", "ServerFront"]

log = logging.getLogger("trio_mcp_sse.server")

RequestHandler: TypeAlias = Callable[["ServerConnection", Mapping[str, Any], Context], Awaitable[dict[str, Any]]]
"""``(connection, params, context) -> result``: raise :class:`MCPError` to answer with an error."""
NotificationHandler: TypeAlias = Callable[["ServerConnection", Mapping[str, Any]], Awaitable[None]]
"""``async (connection, params)``: a client notification to act on."""

_EMPTY: dict[str, Any] = {}
_FAILURES = Failures(
    answered=ClientRequestError,
    timed_out=ClientRequestTimeout,
    closed=SessionClosed,
    peer_gone=(SessionClosed,),
)


class ServerFront(Protocol):
    """What a connection needs of the server it belongs to (:class:`MCPServer` is one)."""

    @property
    def catalog(self) -> Catalog: ...

    log_level: str
    client_request_timeout: float
    max_concurrent_requests: int
    request_handlers: dict[str, RequestHandler]
    notification_handlers: dict[str, NotificationHandler]
    cache: CachePolicy
    request_state_key: RequestStateKey

    @property
    def composition(self) -> Composition: ...

    def initialize_result(self, protocol_version: str) -> dict[str, Any]: ...
    def discover_result(self) -> dict[str, Any]: ...
    def server_info(self) -> dict[str, Any]: ...


class ServerConnection:
    """Server-side state of one session.  Created by :meth:`MCPServer.run_session`."""

    def __init__(
        self,
        server: ServerFront,
        session: Session,
        *,
        lifespan_context: Callable[[], Any] | None = None,
        tasks: TaskStore | None = None,
    ) -> None:
        self.server = server
        self.tasks = tasks
        """The running app's tasks (the tasks extension), or ``None`` outside an app."""
        self.catalog = server.catalog
        self.session = session
        self.protocol_version: str | None = None
        self.client_info: Mapping[str, Any] | None = None
        self.client_capabilities: Mapping[str, Any] = {}
        self.initialized = False
        """``initialize`` was answered (the client may follow with requests at once)."""
        self.client_ready = False
        """The client sent ``notifications/initialized``."""
        self.log_level: str | None = server.log_level
        """Threshold for ``notifications/message``; the client moves it with ``logging/setLevel``
        (or, in the modern era, names it per request; ``None``: no log messages)."""
        self._subscriptions: set[str] | None = None
        self.state: dict[str, Any] = {}
        """The application's per-session state (``ctx.session_state``): kept across this session's
        requests, cleared when it ends.  Without a session of its own (stateless, 2026-07-28)
        a request is served as a session of one request, so it lasts one request."""
        self._lifespan_context = lifespan_context
        self.closed = False
        self._ending: trio.Event | None = None
        self._ended = False
        self.modern = False
        """The session serves one request of protocol 2026-07-28 or later (see ``_modern``)."""
        if session.stateless:
            # No handshake precedes a stateless request: its headers carry the revision.
            version = session.headers.get("mcp-protocol-version")
            self.initialized = self.client_ready = True
            if is_modern_request(version):
                self.modern = True
                self.log_level = None  # until the request's envelope asks for messages
            else:
                self.protocol_version = version if version in SUPPORTED_PROTOCOL_VERSIONS else UNANNOUNCED_HTTP_VERSION
        self.rpc = Peer(
            self._send,
            route=self._route,
            on_notification=self._on_notification,
            failures=_FAILURES,
            side="server",
            logger=log,
            label=f"session {session.id}",
            max_in_flight=server.max_concurrent_requests,
        )
        """The JSON-RPC engine of this session (ids, pending requests, cancel scopes)."""
        self._nursery: trio.Nursery | None = None
        self._queued: dict[bytes, None] = {}
        self._flushing = False

    def __repr__(self) -> str:
        return f"<ServerConnection {self.session!r}>"

    @property
    def session_id(self) -> str:
        return self.session.id

    @property
    def principal(self) -> str | None:
        """Who opened the session, as the authentication hook named them (``None``: anonymous)."""
        return self.session.principal

    @property
    def lifespan_context(self) -> Any:
        """What the server's lifespan yielded for the app serving this session (``ctx.lifespan_context``).

        ``None`` without a lifespan; ``RuntimeError`` when the server has one and
        nothing entered it (no ASGI lifespan ran, see :meth:`MCPServer.running`).
        """
        return None if self._lifespan_context is None else self._lifespan_context()

    @property
    def subscriptions(self) -> set[str]:
        """Resource URIs this client subscribed to."""
        subscriptions = self._subscriptions
        if subscriptions is None:  # made on first use: most sessions never subscribe
            subscriptions = self._subscriptions = set()
        return subscriptions

    @subscriptions.setter
    def subscriptions(self, value: set[str]) -> None:
        self._subscriptions = value

    @property
    def ending(self) -> trio.Event:
        """Set when the session drains (its inbound channel ended) or ends: long requests wind down."""
        ending = self._ending
        if ending is None:  # made on first use: only long requests wait for it
            ending = self._ending = trio.Event()
            if self._ended:
                ending.set()
        return ending

    def _end(self) -> None:
        self._ended = True
        if self._ending is not None:
            self._ending.set()

    @property
    def in_flight(self) -> dict[RequestId, trio.CancelScope]:
        """Client requests being served, by id: the cancel scope of each."""
        return self.rpc.in_flight

    # -- the session task ------------------------------------------------------------------------
    async def run(self) -> None:
        """Serve the session until its inbound channel ends or the session is cancelled."""
        unsubscribe = self.catalog.subscribe(self._announced)
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                self.rpc.start(nursery)
                async for incoming in self.session.incoming:
                    await self.rpc.dispatch(incoming.message, incoming)
                    # Waiting for the next message must not keep this one (its params may
                    # be large, its headers view holds the POST's headers) alive.
                    del incoming
                # The inbound channel ended: the session is draining.  Requests already
                # accepted run to completion and answer; the client's answers to our own
                # requests can no longer arrive, so those fail now instead of timing out.
                # A request that would run for ever (a listen stream) ends now too.
                self._end()
                self.rpc.close(self.session.close_reason or "session closed")
        finally:
            self._end()
            self.closed = True
            self._nursery = None
            unsubscribe()
            self.rpc.close(self.session.close_reason or "session closed")
            self.rpc.detach()

    # -- the way out -------------------------------------------------------------------------------
    async def _send(self, data: bytes, related_request_id: RequestId | None, final: bool = False) -> None:
        """Queue one message for the client: every message of this session leaves here.

        ``related_request_id`` is the client request the message belongs to
        (its response, or anything sent while serving it), else ``None``;
        ``final`` marks that request's last message (see :class:`~trio_mcp_sse._session.Outgoing`).
        """
        await self.session.send(data, related_request_id=related_request_id, final=final)

    def _send_nowait(self, data: bytes) -> bool:
        """:meth:`_send` for announcements (related to no request) from synchronous callers."""
        return self.session.send_nowait(data)

    # -- requests from the client ----------------------------------------------------------------
    def _route(self, request: JSONRPCRequest, incoming: Incoming) -> Mapping[str, Any] | Handler:
        method = request.method
        if self.modern:
            return self._route_modern(request, incoming)
        if method == "ping":
            return _EMPTY
        if method == "initialize":
            return self._initialize(request)
        handler = self.server.request_handlers.get(method)
        if handler is None:
            raise MCPError(METHOD_NOT_FOUND, f"Method not found: {method}")
        if not self.initialized:
            raise MCPError(INVALID_REQUEST, "Session not initialized: send 'initialize' first")
        params = request.params or _EMPTY
        meta = params.get("_meta")
        context = Context(
            self, request.id, method, incoming.headers, meta if isinstance(meta, dict) else None,
            access_token=incoming.access_token,
        )
        return functools.partial(self.server.composition.wrap(handler), self, params, context)

    def _route_modern(self, request: JSONRPCRequest, incoming: Incoming) -> Handler:
        """A request of the modern era: its envelope first, then its method (see ``_modern``)."""
        method = request.method
        params = request.params or _EMPTY
        envelope = _modern.read_envelope(method, params, incoming.headers)
        handler: RequestHandler | None
        if method == "server/discover":
            handler = _discover
        elif method == "subscriptions/listen":
            handler = _modern.listen
        elif method in _modern.REMOVED_METHODS:
            handler = None
        else:
            handler = self.server.request_handlers.get(method)
        if handler is None:
            raise MCPError(METHOD_NOT_FOUND, f"Method not found: {method}")
        self.protocol_version = envelope.protocol_version
        self.client_capabilities = envelope.client_capabilities
        self.client_info = envelope.client_info
        self.log_level = envelope.log_level
        inputs = None
        if method in _modern.INPUT_METHODS_OF_REQUESTS:
            inputs = self._input_round(method, params)
            if method == "tools/call":
                self._check_param_headers(params, incoming.headers)
        context = Context(
            self, request.id, method, incoming.headers, params.get("_meta"), inputs, access_token=incoming.access_token
        )
        handler = self.server.composition.wrap(handler)
        return functools.partial(self._serve_modern, handler, method, params, context, inputs)

    def _input_round(self, method: str, params: Mapping[str, Any]) -> InputRound:
        """The answers a retry brings: the sealed ones of earlier rounds, then the new ones."""
        responses = params.get("inputResponses", _EMPTY)
        if not isinstance(responses, dict):
            raise MCPError(INVALID_PARAMS, f"{method}: params.inputResponses must be an object")
        answers: dict[str, Any] = {}
        state = params.get("requestState")
        if state is not None:
            answers.update(self.server.request_state_key.open(state, request_binding(method, params)))
        answers.update(responses)
        return InputRound(answers, self.client_capabilities)

    def _check_param_headers(self, params: Mapping[str, Any], headers: Mapping[str, str]) -> None:
        name = params.get("name")
        tool = self.catalog.tools.get(name) if isinstance(name, str) else None
        arguments = params.get("arguments")
        if tool is not None and isinstance(arguments, dict | None):
            _modern.check_param_headers(tool.definition["inputSchema"], arguments or _EMPTY, headers)

    async def _serve_modern(
        self,
        handler: RequestHandler,
        method: str,
        params: Mapping[str, Any],
        context: Context,
        inputs: InputRound | None,
    ) -> dict[str, Any]:
        server_info = self.server.server_info()
        try:
            result = await handler(self, params, context)
        except InputRequired as asked:
            return self._input_required(asked.requests, method, params, inputs, server_info)
        except BaseExceptionGroup as group:
            asked_group, rest = group.split(InputRequired)
            if asked_group is None:
                raise
            if rest is not None:  # questions and failures together: the failures win
                raise rest from None
            requests: dict[str, Any] = {}
            for leaf in _leaves(asked_group):
                requests.update(leaf.requests)
            return self._input_required(requests, method, params, inputs, server_info)
        except ResourceNotFound as missing:
            # 2026-07-28 answers an unknown resource as a bad parameter, naming it.
            raise MCPError(INVALID_PARAMS, missing.message, {"uri": missing.uri}) from None
        cache = _modern.cache_policy_for(self.catalog, method, params, self.server.cache)
        return _modern.complete_result(result, server_info, cache)

    def _input_required(
        self,
        requests: Mapping[str, Any],
        method: str,
        params: Mapping[str, Any],
        inputs: InputRound | None,
        server_info: Mapping[str, Any],
    ) -> dict[str, Any]:
        if inputs is None:  # a method that may not ask (tools/list...): the question is a bug
            raise MCPError(INTERNAL_ERROR, f"{method} cannot ask the client for input")
        state = self.server.request_state_key.seal(request_binding(method, params), inputs.used)
        return _modern.input_required_result(requests, state, server_info)

    def _initialize(self, request: JSONRPCRequest) -> dict[str, Any]:
        if self.initialized and not self.session.stateless:
            raise MCPError(INVALID_REQUEST, "Session is already initialized")
        params = request.params or _EMPTY
        requested = params.get("protocolVersion")
        if not isinstance(requested, str):
            raise MCPError(INVALID_PARAMS, "initialize: params.protocolVersion must be a string")
        capabilities = params.get("capabilities", _EMPTY)
        if not isinstance(capabilities, dict):
            raise MCPError(INVALID_PARAMS, "initialize: params.capabilities must be an object")
        self.protocol_version = requested if requested in SUPPORTED_PROTOCOL_VERSIONS else LATEST_PROTOCOL_VERSION
        info = params.get("clientInfo")
        self.client_info = info if isinstance(info, dict) else None
        self.client_capabilities = capabilities
        self.initialized = True
        return self.server.initialize_result(self.protocol_version)

    # -- notifications from the client -----------------------------------------------------------
    async def _on_notification(self, notification: JSONRPCNotification, incoming: Incoming) -> None:
        method = notification.method
        if method == "notifications/initialized":
            self.client_ready = True
        handler = self.server.composition.wrap_notification(
            method, self.server.notification_handlers.get(method), incoming
        )
        if handler is not None and self.initialized and self._nursery is not None:
            self._nursery.start_soon(self._notify_handler, handler, method, notification.params or _EMPTY)

    async def _notify_handler(self, handler: NotificationHandler, method: str, params: Mapping[str, Any]) -> None:
        try:
            await handler(self, params)
        except SessionClosed:
            pass
        except Exception:
            log.exception("session %s: handler for %s failed", self.session.id, method)

    def start_soon(self, async_fn: Callable[..., Awaitable[Any]], *args: Any, name: str | None = None) -> None:
        """Run a task owned by this session (a proxy's upstream session, say).

        It is cancelled when the session ends; when the session drains
        (:attr:`ending` is set) it must finish by itself, since the drain
        waits for it.  Give it its own error boundary: an exception escaping
        it ends the session.
        """
        if self._nursery is None:
            raise RuntimeError("the session is not running")
        self._nursery.start_soon(async_fn, *args, name=name)

    # -- server -> client --------------------------------------------------------------------------
    def client_supports(self, capability: str) -> bool:
        return self.client_capabilities.get(capability) is not None

    async def send_notification(
        self, method: str, params: Mapping[str, Any] | None = None, *, related_request_id: RequestId | None = None
    ) -> None:
        """Queue a notification for the client (raises :class:`SessionClosed` if it is gone)."""
        await self.rpc.notify(method, params, related_request_id=related_request_id)

    async def send_progress(
        self,
        token: str | int,
        progress: float,
        total: float | None = None,
        message: str | None = None,
        *,
        related_request_id: RequestId | None = None,
    ) -> None:
        params: dict[str, Any] = {"progressToken": token, "progress": progress}
        if total is not None:
            params["total"] = total
        if message is not None and version_at_least(self.protocol_version, "2025-03-26"):
            params["message"] = message
        await self.rpc.notify("notifications/progress", params, related_request_id=related_request_id)

    def log_enabled(self, level: str) -> bool:
        """Whether a message at ``level`` would currently reach this client."""
        return self.log_level is not None and LOG_LEVELS[level] >= LOG_LEVELS[self.log_level]

    async def ask_to_reconnect(self, request_id: RequestId) -> None:
        """Queue the signal that ends ``request_id``'s own stream early (see ``Context.close_sse_stream``)."""
        await self.session.send(b"", related_request_id=request_id, reconnect=True)

    async def log(
        self, level: str, data: Any, *, logger: str | None = None, related_request_id: RequestId | None = None
    ) -> None:
        """Send ``notifications/message`` if ``level`` passes the session's threshold."""
        if level not in LOG_LEVELS:
            raise ValueError(f"unknown log level {level!r}; expected one of {', '.join(LOG_LEVELS)}")
        if not self.initialized or not self.log_enabled(level):
            return
        params: dict[str, Any] = {"level": level, "data": data}
        if logger is not None:
            params["logger"] = logger
        await self.rpc.notify("notifications/message", params, related_request_id=related_request_id)

    async def send_request(
        self,
        method: str,
        params: Mapping[str, Any] | None = None,
        *,
        capability: str | None = None,
        related_request_id: RequestId | None = None,
    ) -> dict[str, Any]:
        """Send a request to the client and wait for its answer; return the ``result``.

        Raises :class:`ClientCapabilityError` (before sending anything) when
        ``capability`` is given and the client did not declare it,
        :class:`MCPError` when the client answers with an error,
        :class:`ClientRequestTimeout` after the server's
        ``client_request_timeout`` (the client is then sent
        ``notifications/cancelled``), and :class:`SessionClosed` when the
        session ends first.  For a shorter bound, cancel the caller (e.g.
        ``trio.move_on_after``): that too tells the client to stop.
        ``related_request_id``: the client request being served, if any
        (a :class:`Context` passes its own).
        """
        if self.session.stateless:
            raise ClientCapabilityError(
                method,
                capability or method,
                f"{method} needs a session: this server is stateless, so the client's answer could not reach it",
            )
        if capability is not None and not self.client_supports(capability):
            raise ClientCapabilityError(method, capability)
        if self.closed or self.session.closed:
            raise SessionClosed(self.session.close_reason or "session closed")
        return await self.rpc.request(
            method, params, timeout=self.server.client_request_timeout, related_request_id=related_request_id
        )

    # -- announcements (list_changed, resources/updated) -------------------------------------------
    def _announced(self, data: bytes, uri: str | None) -> None:
        """The catalog's listener: pass on what this client wants to hear."""
        if not self.initialized or self.modern or (uri is not None and uri not in (self._subscriptions or ())):
            return  # (a modern client hears of changes on its subscriptions/listen stream only)
        self.post(data)

    def post(self, data: bytes) -> None:
        """Queue an announcement without waiting (for synchronous callers).

        Sent at once when the outbound buffer has room and nothing is queued
        before it; otherwise kept (identical announcements coalesce) and sent
        by a task of this session, in order, with the usual bounded wait.
        """
        if self.closed:
            return
        if not self._queued and self._send_nowait(data):
            return
        if self.session.closed:
            return
        self._queued[data] = None
        if not self._flushing and self._nursery is not None:
            self._flushing = True
            self._nursery.start_soon(self._flush)

    async def _flush(self) -> None:
        try:
            while self._queued:
                data = next(iter(self._queued))
                await self._send(data, None)
                self._queued.pop(data, None)
        except SessionClosed:
            self._queued.clear()
        finally:
            self._flushing = False



async def _discover(connection: ServerConnection, params: Mapping[str, Any], context: Context) -> dict[str, Any]:
    return connection.server.discover_result()


def _leaves(group: BaseExceptionGroup[InputRequired]) -> list[InputRequired]:
    found: list[InputRequired] = []
    for exception in group.exceptions:
        if isinstance(exception, BaseExceptionGroup):
            found.extend(_leaves(exception))
        else:
            found.append(exception)
    return found
