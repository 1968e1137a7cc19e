"""Middleware: one hook around every request and notification a server handles.

Theory of operation
-------------------
A middleware is ``async def middleware(request: RequestInfo, call_next) -> result``.
The server keeps its middleware in registration order and runs them as one
chain, the first registered outermost: each sees the request, may change it
(``call_next(request.replace(params=...))``), answer it itself (return a
result, or raise :class:`MCPError`), and sees what the rest of the chain
answered.  The innermost ``call_next`` is the method's handler.

The chain runs inside the request's own task and cancel scope, so a
cancelled request cancels the middleware's ``await call_next(...)`` like any
other await, and a middleware costs nothing in ordering or concurrency: one
slow request never waits for another's middleware.

What a middleware raises is answered, never fatal.  :class:`MCPError` becomes
that JSON-RPC error; :class:`ToolError` becomes the ``isError`` result of a
``tools/call`` (what the model would have seen had the tool raised it) and a
-32603 error with its message for any other method; anything else is what a
failing handler gets (-32603, traceback logged once).  The session lives on.

Notifications from the client go through the same chain, in a task of their
own (as their handlers always did): ``request.notification`` is true,
``request.context`` is ``None`` (there is no request to talk back within), and
``call_next`` returns ``None``.  An :class:`MCPError` or :class:`ToolError` a
middleware raises for a notification has nobody to be answered to: it only
stops the notification, with a debug log line.

This module knows nothing of sessions or mounted servers: :func:`run_request`
and :func:`run_notification` are handed the innermost step.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

from .._access_token import AccessToken
from .._errors import MCPError, ToolError
from .._jsonrpc import INTERNAL_ERROR, RequestId
from ._context import Context

__all__ = ["CallNext", "Middleware", "RequestInfo", "run_notification", "run_request"]

log = logging.getLogger("trio_mcp_sse.server")


@dataclass(frozen=True, slots=True)
class RequestInfo:
    """One request (or notification) on its way through the server's middleware.

    Frozen: a middleware that wants the rest of the chain to see other params
    passes ``request.replace(params=...)`` to ``call_next``.  Changing
    ``method`` does not re-route the request: the handler was chosen by the
    method the client sent.
    """

    method: str
    """The JSON-RPC method, e.g. ``tools/call`` or ``notifications/roots/list_changed``."""
    params: Mapping[str, Any]
    """The params as the handler will see them (``{}`` when the client sent none)."""
    connection: Any
    """The session's :class:`ServerConnection`: negotiated version, client capabilities,
    log level, subscriptions."""
    context: Context | None
    """The request's :class:`Context` (``None`` for a notification)."""
    access_token: AccessToken | None = None
    """What the message's bearer token says, or ``None`` without authentication."""
    headers: Mapping[str, str] = dataclasses.field(default_factory=dict)
    """HTTP headers of the POST that carried the message (names lower-case)."""

    @property
    def notification(self) -> bool:
        """A client notification: no answer is expected and ``call_next`` returns ``None``."""
        return self.context is None

    @property
    def request_id(self) -> RequestId | None:
        """The JSON-RPC id of the request (``None`` for a notification)."""
        return None if self.context is None else self.context.request_id

    @property
    def session_id(self) -> str:
        session_id: str = self.connection.session_id
        return session_id

    @property
    def principal(self) -> str | None:
        """Who opened the session, as the authentication hook named them (``None``: anonymous)."""
        principal: str | None = self.connection.principal
        return principal

    @property
    def name(self) -> str | None:
        """What the request is about: the tool or prompt name, the resource URI (else ``None``)."""
        key = "uri" if self.method in ("resources/read", "resources/subscribe", "resources/unsubscribe") else "name"
        value = self.params.get(key) if self.method in _NAMED else None
        return value if isinstance(value, str) else None

    def replace(self, **changes: Any) -> RequestInfo:
        """A copy with some fields changed (``dataclasses.replace``), to hand to ``call_next``."""
        return dataclasses.replace(self, **changes)


_NAMED = frozenset({"tools/call", "prompts/get", "resources/read", "resources/subscribe", "resources/unsubscribe"})

CallNext: TypeAlias = Callable[[RequestInfo], Awaitable[Any]]
"""``await call_next(request)``: the rest of the chain; returns the result (``None`` for a notification)."""
Middleware: TypeAlias = Callable[[RequestInfo, CallNext], Awaitable[Any]]
"""``async def middleware(request, call_next) -> result``: see :meth:`MCPServer.middleware`."""


async def _through(chain: Sequence[Middleware], innermost: CallNext, index: int, request: RequestInfo) -> Any:
    if index == len(chain):
        return await innermost(request)
    return await chain[index](request, functools.partial(_through, chain, innermost, index + 1))


async def run_request(
    chain: Sequence[Middleware], request: RequestInfo, innermost: Callable[[RequestInfo], Awaitable[Mapping[str, Any]]]
) -> dict[str, Any]:
    """Serve one request through ``chain`` (outermost first); the answer as the handler's would be.

    The chain is read once, so a middleware registered while the request runs
    applies from the next request on.
    """
    try:
        result = await _through(tuple(chain), innermost, 0, request)
    except ToolError as failure:
        if request.method == "tools/call":
            return {"content": [{"type": "text", "text": str(failure)}], "isError": True}
        raise MCPError(INTERNAL_ERROR, str(failure)) from None
    if not isinstance(result, Mapping):
        raise TypeError(f"{request.method}: the middleware answered {type(result).__name__}, not a result object (a dict)")
    return dict(result)


async def run_notification(
    chain: Sequence[Middleware], request: RequestInfo, innermost: Callable[[RequestInfo], Awaitable[None]]
) -> None:
    """Pass one client notification through ``chain``; an :class:`MCPError` or :class:`ToolError`
    only stops it (there is nobody to answer)."""

    async def last(current: RequestInfo) -> None:
        await innermost(current)

    try:
        await _through(tuple(chain), last, 0, request)
    except (MCPError, ToolError) as refused:
        log.debug("session %s: middleware stopped %s: %s", request.session_id, request.method, refused)
