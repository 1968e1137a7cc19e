"""One MCP session as seen by the server layer: lifecycle, dispatch, in-flight requests.

Theory of operation
-------------------
:meth:`ServerConnection.run` is the session task's body.  It reads the session's
inbound channel in order and

* answers ``initialize`` and ``ping`` inline (cheap, and ``initialize`` must be
  settled before anything that follows it is looked at);
* starts every other request as its own task in the connection's nursery, inside
  a cancel scope kept in ``in_flight`` under the request id -- so a slow tool never
  blocks a ping, and ``notifications/cancelled`` can cancel exactly one request;
* handles notifications inline.

A request task sends exactly one response, unless it was cancelled on the
client's behalf, in which case it sends none.  An exception in a handler becomes
a JSON-RPC error for that request only; the session lives on.  When the session
ends (client gone, server stopping) the nursery's cancellation reaches every
request task: nothing outlives the session.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, Final

import trio

from .._errors import MCPError
from .._jsonrpc import (
    INTERNAL_ERROR,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    JSONRPCNotification,
    JSONRPCRequest,
    RequestId,
    error_response,
    result_response,
)
from .._session import Incoming, Session
from ._context import Context

if TYPE_CHECKING:
    from ._server import MCPServer

__all__ = ["SUPPORTED_PROTOCOL_VERSIONS", "ServerConnection"]

log = logging.getLogger("trio_mcp_sse.server")

SUPPORTED_PROTOCOL_VERSIONS: Final = ("2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25")
LATEST_PROTOCOL_VERSION: Final = SUPPORTED_PROTOCOL_VERSIONS[-1]

RequestHandler = Callable[["ServerConnection", Mapping[str, Any], Context], Awaitable[dict[str, Any]]]


class ServerConnection:
    """Server-side state of one session."""

    def __init__(self, server: MCPServer, session: Session) -> None:
        self.server = server
        self.session = session
        self.protocol_version: str | None = None
        self.client_info: Mapping[str, Any] | None = None
        self.client_capabilities: Mapping[str, Any] = {}
        self.initialized = False
        """``initialize`` was answered (the client may follow with requests at once)."""
        self.in_flight: dict[RequestId, trio.CancelScope] = {}

    async def run(self) -> None:
        receive = self.session.incoming.receive
        async with trio.open_nursery() as nursery:
            while True:
                try:
                    incoming = await receive()
                except trio.EndOfChannel:
                    break
                message = incoming.message
                if isinstance(message, JSONRPCRequest):
                    await self._on_request(nursery, message, incoming)
                elif isinstance(message, JSONRPCNotification):
                    await self._on_notification(message)
                else:
                    log.debug("session %s: ignoring a response to no request of ours", self.session.id)
                # Waiting for the next message must not keep this one (its params may
                # be large, its headers view holds the POST's headers) alive.
                del incoming, message
            nursery.cancel_scope.cancel()

    # -- requests ------------------------------------------------------------------------------
    async def _on_request(self, nursery: trio.Nursery, request: JSONRPCRequest, incoming: Incoming) -> None:
        if request.method == "ping":
            await self.session.send(result_response(request.id, {}))
            return
        if request.method == "initialize":
            await self.session.send(self._initialize(request))
            return
        if request.id in self.in_flight:
            await self.session.send(
                error_response(request.id, INVALID_REQUEST, f"Request id {request.id!r} is already in use")
            )
            return
        scope = trio.CancelScope()
        self.in_flight[request.id] = scope
        nursery.start_soon(self._serve, request, incoming, scope, name=f"mcp request {request.method}")

    def _initialize(self, request: JSONRPCRequest) -> bytes:
        if self.initialized:
            return error_response(request.id, INVALID_REQUEST, "Session is already initialized")
        params = request.params or {}
        requested = params.get("protocolVersion")
        if not isinstance(requested, str):
            return error_response(request.id, -32602, "initialize: params.protocolVersion must be a string")
        self.protocol_version = requested if requested in SUPPORTED_PROTOCOL_VERSIONS else LATEST_PROTOCOL_VERSION
        info = params.get("clientInfo")
        self.client_info = info if isinstance(info, dict) else None
        capabilities = params.get("capabilities")
        self.client_capabilities = capabilities if isinstance(capabilities, dict) else {}
        self.initialized = True
        return result_response(request.id, self.server.initialize_result(self.protocol_version))

    async def _serve(
        self, request: JSONRPCRequest, incoming: Incoming, scope: trio.CancelScope
    ) -> None:
        try:
            with scope:
                response = await self._respond(request, incoming)
                await self.session.send(response)
        finally:
            if self.in_flight.get(request.id) is scope:
                del self.in_flight[request.id]

    async def _respond(self, request: JSONRPCRequest, incoming: Incoming) -> bytes:
        handler = self.server.request_handlers.get(request.method)
        if handler is None:
            return error_response(request.id, METHOD_NOT_FOUND, f"Method not found: {request.method}")
        if not self.initialized:
            return error_response(
                request.id, INVALID_REQUEST, "Session not initialized: send 'initialize' first"
            )
        params = request.params or {}
        meta = params.get("_meta")
        context = Context(self, request.id, incoming.headers, meta if isinstance(meta, dict) else None)
        try:
            result = await handler(self, params, context)
        except MCPError as error:
            return error_response(request.id, error.code, error.message, error.data)
        except Exception:
            log.exception("session %s: %s handler failed", self.session.id, request.method)
            return error_response(request.id, INTERNAL_ERROR, f"Internal error while handling {request.method}")
        return result_response(request.id, result)

    # -- notifications -------------------------------------------------------------------------
    async def _on_notification(self, notification: JSONRPCNotification) -> None:
        if notification.method == "notifications/cancelled":
            request_id = (notification.params or {}).get("requestId")
            if isinstance(request_id, str | int) and request_id in self.in_flight:
                self.in_flight[request_id].cancel()
        # notifications/initialized and unknown notifications need no action
