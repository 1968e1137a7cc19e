"""One MCP session as seen by the server layer: lifecycle, dispatch, in-flight requests.

Theory of operation
-------------------
:meth:`ServerConnection.run` is the session task's body.  It owns a nursery
and reads the session's inbound channel in order:

* ``ping`` and ``initialize`` are answered inline: cheap, and ``initialize``
  must be settled before anything after it is looked at.  Lifecycle rules
  (nothing but ``ping`` before ``initialize``, no second ``initialize``,
  unknown methods get -32601) are checked inline too, so a refused request
  costs no task.
* Every other request becomes its own task in the nursery, inside a cancel
  scope kept in ``in_flight`` under the request id.  A slow tool never blocks
  a ping, and ``notifications/cancelled`` cancels exactly one request: that
  request sends no response, the others carry on.
* Responses from the client settle the server->client request that is waiting
  for them (``_pending``, keyed by the id we chose).
* Notifications are handled inline (``notifications/cancelled`` cancels a
  scope); one with a handler registered on the server runs that handler as
  a task, inside its own error boundary.

A request task sends exactly one response unless the client cancelled it.  An
exception in a handler becomes a JSON-RPC error for that request only (-32603,
traceback logged once; a tool's exception becomes an ``isError`` result); the
session lives on.  When the inbound channel ends (the server drains) the
requests already accepted finish and answer before :meth:`run` returns.  When
the session ends (client gone, server stopping) the session's cancel scope reaches every request task,
and whatever still waits for a client's answer from outside the session is
woken with :class:`SessionClosed`: nothing outlives the session, nothing
waits for it forever.

Everything the server sends goes through the session's bounded outbound
channel, so the order in which a task queues messages is the order the client
sees them: a tool's progress notifications always precede its result.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

import orjson
import trio

from .._errors import ClientCapabilityError, ClientRequestError, ClientRequestTimeout, MCPError
from .._jsonrpc import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    JSONRPCError,
    JSONRPCNotification,
    JSONRPCRequest,
    JSONRPCResponse,
    RequestId,
    error_response,
    result_response,
)
from .._session import Incoming, Session, SessionClosed
from ._context import Context
from ._protocol import (
    LATEST_PROTOCOL_VERSION,
    LOG_LEVELS,
    SERVER_BUSY,
    SUPPORTED_PROTOCOL_VERSIONS,
    version_at_least,
)

if TYPE_CHECKING:
    from ._server import MCPServer

__all__ = ["RequestHandler", "ServerConnection"]

log = logging.getLogger("trio_mcp_sse.server")

RequestHandler = Callable[["ServerConnection", Mapping[str, Any], Context], Awaitable[dict[str, Any]]]
"""``(connection, params, context) -> result``: raise :class:`MCPError` to answer with an error."""

_EMPTY: dict[str, Any] = {}
_EARLY_CANCELS_KEPT = 64


class _Waiter:
    """One server->client request waiting for the client's answer."""

    __slots__ = ("closed", "error", "event", "result")

    def __init__(self) -> None:
        self.event = trio.Event()
        self.result: dict[str, Any] | None = None
        self.error: ClientRequestError | None = None
        self.closed = False


def _notification(method: str, params: Mapping[str, Any] | None) -> bytes:
    if params is None:
        return orjson.dumps({"jsonrpc": "2.0", "method": method})
    return orjson.dumps({"jsonrpc": "2.0", "method": method, "params": params})


class ServerConnection:
    """Server-side state of one session.  Created by :meth:`MCPServer.run_session`."""

    def __init__(self, server: MCPServer, session: Session) -> None:
        self.server = server
        self.session = session
        self.protocol_version: str | None = None
        self.client_info: Mapping[str, Any] | None = None
        self.client_capabilities: Mapping[str, Any] = {}
        self.initialized = False
        """``initialize`` was answered (the client may follow with requests at once)."""
        self.client_ready = False
        """The client sent ``notifications/initialized``."""
        self.log_level: str = server.log_level
        """Threshold for ``notifications/message``; the client moves it with ``logging/setLevel``."""
        self.subscriptions: set[str] = set()
        """Resource URIs this client subscribed to."""
        self.in_flight: dict[RequestId, trio.CancelScope] = {}
        """Client requests being served, by id: the cancel scope of each."""
        self.closed = False
        self._pending: dict[int, _Waiter] = {}
        self._last_request_id = 0
        self._nursery: trio.Nursery | None = None
        self._queued: dict[bytes, None] = {}
        self._early_cancels: dict[RequestId, None] = {}
        self._flushing = False

    def __repr__(self) -> str:
        return f"<ServerConnection {self.session!r}>"

    # -- the session task ------------------------------------------------------------------------
    async def run(self) -> None:
        """Serve the session until its inbound channel ends or the session is cancelled."""
        self.server._connections.add(self)
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                async for incoming in self.session.incoming:
                    message = incoming.message
                    if isinstance(message, JSONRPCRequest):
                        await self._on_request(nursery, message, incoming)
                    elif isinstance(message, JSONRPCNotification):
                        self._on_notification(nursery, message)
                    elif isinstance(message, JSONRPCResponse):
                        self._settle(message.id, result=message.result)
                    elif isinstance(message, JSONRPCError):
                        error = message.error
                        self._settle(message.id, error=ClientRequestError(error.code, error.message, error.data))
                    # Waiting for the next message must not keep this one (its params may
                    # be large, its headers view holds the POST's headers) alive.
                    del incoming, message
                # The inbound channel ended: the session is draining.  Requests already
                # accepted run to completion and answer; the client's answers to our own
                # requests can no longer arrive, so those fail now instead of timing out.
                self._fail_pending()
        finally:
            self.closed = True
            self._nursery = None
            self.server._connections.discard(self)
            self._fail_pending()

    def _fail_pending(self) -> None:
        for waiter in self._pending.values():
            waiter.closed = True
            waiter.event.set()

    # -- requests from the client ----------------------------------------------------------------
    async def _on_request(self, nursery: trio.Nursery, request: JSONRPCRequest, incoming: Incoming) -> None:
        method = request.method
        if method == "ping":
            await self.session.send(result_response(request.id, _EMPTY))
            return
        if method == "initialize":
            await self.session.send(self._initialize(request))
            return
        if self._early_cancels and self._early_cancels.pop(request.id, False) is None:
            log.debug("session %s: request %r was cancelled before it arrived", self.session.id, request.id)
            return
        handler = self.server.request_handlers.get(method)
        refusal: bytes | None = None
        if handler is None:
            refusal = error_response(request.id, METHOD_NOT_FOUND, f"Method not found: {method}")
        elif not self.initialized:
            refusal = error_response(
                request.id, INVALID_REQUEST, "Session not initialized: send 'initialize' first"
            )
        elif request.id in self.in_flight:
            refusal = error_response(request.id, INVALID_REQUEST, f"Request id {request.id!r} is already in use")
        elif len(self.in_flight) >= self.server.max_concurrent_requests:
            refusal = error_response(
                request.id,
                SERVER_BUSY,
                f"Server busy: {len(self.in_flight)} requests already in flight on this session",
            )
        if refusal is not None:
            await self.session.send(refusal)
            return
        assert handler is not None
        scope = trio.CancelScope()
        self.in_flight[request.id] = scope
        nursery.start_soon(self._serve, handler, request, incoming, scope)

    def _initialize(self, request: JSONRPCRequest) -> bytes:
        if self.initialized:
            return error_response(request.id, INVALID_REQUEST, "Session is already initialized")
        params = request.params or _EMPTY
        requested = params.get("protocolVersion")
        if not isinstance(requested, str):
            return error_response(request.id, INVALID_PARAMS, "initialize: params.protocolVersion must be a string")
        capabilities = params.get("capabilities", _EMPTY)
        if not isinstance(capabilities, dict):
            return error_response(request.id, INVALID_PARAMS, "initialize: params.capabilities must be an object")
        self.protocol_version = requested if requested in SUPPORTED_PROTOCOL_VERSIONS else LATEST_PROTOCOL_VERSION
        info = params.get("clientInfo")
        self.client_info = info if isinstance(info, dict) else None
        self.client_capabilities = capabilities
        self.initialized = True
        return result_response(request.id, self.server.initialize_result(self.protocol_version))

    async def _serve(
        self, handler: RequestHandler, request: JSONRPCRequest, incoming: Incoming, scope: trio.CancelScope
    ) -> None:
        """One request's task: its response, or none if the client cancelled it."""
        request_id = request.id
        try:
            with scope:
                params = request.params or _EMPTY
                meta = params.get("_meta")
                context = Context(
                    self, request_id, request.method, incoming.headers, meta if isinstance(meta, dict) else None
                )
                try:
                    response = result_response(request_id, await handler(self, params, context))
                except MCPError as error:
                    response = error_response(request_id, error.code, error.message, error.data)
                except SessionClosed:
                    raise
                except Exception:
                    log.exception("session %s: %s handler failed", self.session.id, request.method)
                    response = error_response(
                        request_id, INTERNAL_ERROR, f"Internal error while handling {request.method}"
                    )
                await self.session.send(response)
        except SessionClosed:
            pass  # nobody is left to answer
        finally:
            if self.in_flight.get(request_id) is scope:
                del self.in_flight[request_id]

    # -- notifications from the client -----------------------------------------------------------
    def _on_notification(self, nursery: trio.Nursery, notification: JSONRPCNotification) -> None:
        method = notification.method
        params = notification.params or _EMPTY
        if method == "notifications/cancelled":
            request_id = params.get("requestId")
            if isinstance(request_id, str | int) and not isinstance(request_id, bool):
                scope = self.in_flight.get(request_id)
                if scope is not None:
                    scope.cancel()
                else:
                    # Each message is its own POST, so a cancel can overtake the request
                    # it cancels; remember a few, so that request is then never started.
                    self._early_cancels[request_id] = None
                    if len(self._early_cancels) > _EARLY_CANCELS_KEPT:
                        del self._early_cancels[next(iter(self._early_cancels))]
            return
        if method == "notifications/initialized":
            self.client_ready = True
        handler = self.server.notification_handlers.get(method)
        if handler is not None and self.initialized:
            nursery.start_soon(self._notify_handler, handler, method, params)

    async def _notify_handler(
        self,
        handler: Callable[[ServerConnection, Mapping[str, Any]], Awaitable[None]],
        method: str,
        params: Mapping[str, Any],
    ) -> None:
        try:
            await handler(self, params)
        except SessionClosed:
            pass
        except Exception:
            log.exception("session %s: handler for %s failed", self.session.id, method)

    # -- server -> client --------------------------------------------------------------------------
    def client_supports(self, capability: str) -> bool:
        return self.client_capabilities.get(capability) is not None

    async def send_notification(self, method: str, params: Mapping[str, Any] | None = None) -> None:
        """Queue a notification for the client (raises :class:`SessionClosed` if it is gone)."""
        await self.session.send(_notification(method, params))

    async def send_progress(
        self, token: str | int, progress: float, total: float | None = None, message: str | None = None
    ) -> None:
        params: dict[str, Any] = {"progressToken": token, "progress": progress}
        if total is not None:
            params["total"] = total
        if message is not None and version_at_least(self.protocol_version, "2025-03-26"):
            params["message"] = message
        await self.session.send(_notification("notifications/progress", params))

    def log_enabled(self, level: str) -> bool:
        """Whether a message at ``level`` would currently reach this client."""
        return LOG_LEVELS[level] >= LOG_LEVELS[self.log_level]

    async def log(self, level: str, data: Any, *, logger: str | None = None) -> None:
        """Send ``notifications/message`` if ``level`` passes the session's threshold."""
        if level not in LOG_LEVELS:
            raise ValueError(f"unknown log level {level!r}; expected one of {', '.join(LOG_LEVELS)}")
        if not self.initialized or not self.log_enabled(level):
            return
        params: dict[str, Any] = {"level": level, "data": data}
        if logger is not None:
            params["logger"] = logger
        await self.session.send(_notification("notifications/message", params))

    async def send_request(
        self,
        method: str,
        params: Mapping[str, Any] | None = None,
        *,
        capability: str | None = None,
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
        """
        if capability is not None and not self.client_supports(capability):
            raise ClientCapabilityError(method, capability)
        if self.closed or self.session.closed:
            raise SessionClosed(self.session.close_reason or "session closed")
        bound = self.server.client_request_timeout
        self._last_request_id += 1
        request_id = self._last_request_id
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
        if params is not None:
            message["params"] = params
        waiter = _Waiter()
        self._pending[request_id] = waiter
        try:
            await self.session.send(orjson.dumps(message))
            with trio.move_on_after(bound):
                await waiter.event.wait()
        except trio.Cancelled:
            if not waiter.event.is_set():
                self._tell_client_to_stop(request_id, "the server no longer needs the answer")
            raise
        finally:
            del self._pending[request_id]
        if waiter.result is not None:
            return waiter.result
        if waiter.error is not None:
            raise waiter.error
        if waiter.closed:
            raise SessionClosed(self.session.close_reason or "session closed")
        self._tell_client_to_stop(request_id, f"no answer within {bound:g}s")
        raise ClientRequestTimeout(method, bound)

    def _tell_client_to_stop(self, request_id: int, reason: str) -> None:
        # Best effort and synchronous: this runs where awaiting is impossible
        # (inside a cancelled scope) or pointless (the request is abandoned).
        self.session.send_nowait(
            _notification("notifications/cancelled", {"requestId": request_id, "reason": reason})
        )

    def _settle(
        self, request_id: RequestId | None, *, result: Any = None, error: ClientRequestError | None = None
    ) -> None:
        waiter = self._pending.get(request_id) if isinstance(request_id, int) else None
        if waiter is None or waiter.event.is_set():
            log.debug("session %s: ignoring an answer to no pending request (id %r)", self.session.id, request_id)
            return
        if error is not None:
            waiter.error = error
        else:
            waiter.result = result if isinstance(result, dict) else {"value": result}
        waiter.event.set()

    # -- announcements (list_changed, resources/updated) -------------------------------------------
    def post(self, data: bytes) -> None:
        """Queue an announcement without waiting (for synchronous callers).

        Sent at once when the outbound buffer has room and nothing is queued
        before it; otherwise kept (identical announcements coalesce) and sent
        by a task of this session, in order, with the usual bounded wait.
        """
        if self.closed:
            return
        if not self._queued and self.session.send_nowait(data):
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
                await self.session.send(data)
                self._queued.pop(data, None)
        except SessionClosed:
            self._queued.clear()
        finally:
            self._flushing = False
