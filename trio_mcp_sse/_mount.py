"""What a transport does as an ASGI app besides its own endpoints: mounting, lifespan, probes, drain.

Every transport (HTTP+SSE, Streamable HTTP, WebSocket) is an ASGI app that answers
its endpoints itself, before any framework builds a request object, and
hand everything else to the application they are mounted on.  This base class
holds that part once: :meth:`wrap` / :meth:`init_app`, the lifespan (run by the
outermost transport of a shared :class:`~trio_mcp_sse._host.SessionHost`,
passed through by the others), trusted forwarded headers, the refusal of a
server that is not Trio's, the operational endpoints, CORS response headers,
and drain.  A transport adds :meth:`_route` (its HTTP paths) or
:meth:`_route_websocket` (its WebSocket path).
"""

from __future__ import annotations

import functools
from typing import Any, Final

from ._cors import CorsSettings
from ._forwarded import ForwardedHeaders
from ._host import NOT_TRIO, SessionHost, running_under_trio
from ._http import (
    ASGIApp,
    BodyLimits,
    Outcome,
    RawHeaders,
    Receive,
    Scope,
    Send,
    route_path,
    send_outcome,
)
from ._intake import RequestHead
from ._metrics import Metrics
from ._ops import OperationalEndpoints
from ._resource_metadata import ResourceMetadataEndpoint
from ._security import SecuritySettings
from ._session import Delivery, Refusal, SessionManager

__all__ = ["REFUSAL_OUTCOME", "MountedTransport"]

_NO_HEADERS: Final[RawHeaders] = ()

REFUSAL_OUTCOME: Final = {
    Refusal.DRAINING: Outcome.SHUTTING_DOWN,
    Refusal.AT_CAPACITY: Outcome.TOO_MANY_SESSIONS,
    Refusal.BROKER_UNAVAILABLE: Outcome.BROKER_UNAVAILABLE,
}
"""The answer to a session the manager would not open."""
_DELIVERY_OUTCOME: Final = {
    Delivery.ACCEPTED: Outcome.ACCEPTED,
    Delivery.REJECTED: Outcome.INVALID_MESSAGE,
    Delivery.GONE: Outcome.UNKNOWN_SESSION,
    Delivery.BUSY: Outcome.SESSION_BUSY,
    Delivery.DRAINING: Outcome.SHUTTING_DOWN,
}


class MountedTransport:
    """The ASGI side every HTTP transport shares; subclasses set the attributes and define :meth:`_route`."""

    host: SessionHost
    sessions: SessionManager
    metrics: Metrics
    ops: OperationalEndpoints
    security: SecuritySettings
    cors: CorsSettings | None
    forwarded: ForwardedHeaders | None
    resource_metadata: ResourceMetadataEndpoint | None = None
    """The Protected Resource Metadata document, when the transport's ``auth`` publishes one."""

    def _mount(
        self, host: SessionHost, security: SecuritySettings, cors: CorsSettings | None, ops: OperationalEndpoints
    ) -> None:
        self.host = host
        self.sessions = host.sessions
        self.metrics = host.metrics
        self.security = security
        self.cors = cors
        self.ops = ops
        self.forwarded = ForwardedHeaders(security.trusted_proxies) if security.trusted_proxies else None
        host.add_forward_target(self)

    def _addressed_session(self, path: str, scope: Scope) -> str | None:
        """The id of the existing session this request is for, if it is one a broker could forward
        (a transport answers for its own endpoints; ``None``: a new session, or not a session's)."""
        return None

    def _addressed_worker(self, path: str, scope: Scope) -> str | None:
        """The worker a request names as the one holding its state, if a broker could forward it there
        (a task's request: its id names its worker); ``None``: any worker answers it."""
        return None

    body_limits: BodyLimits
    """How the transport reads a request body; a forwarded request's is read the same way."""

    async def serve_forwarded(self, path: str, scope: Scope, receive: Receive, send: Send) -> bool:
        """Answer a request another worker forwarded here, as if it had arrived here (no re-forwarding)."""
        return await self._route(path, scope, receive, send)

    async def _route(self, path: str, scope: Scope, receive: Receive, send: Send) -> bool:
        """Answer an HTTP request if ``path`` is one of the transport's endpoints; report whether it did."""
        return False

    async def _route_websocket(self, path: str, scope: Scope, receive: Receive, send: Send) -> bool:
        """Answer a WebSocket connection if ``path`` is the transport's; report whether it did."""
        return False

    # -- ASGI entry points -------------------------------------------------------------------------
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._dispatch(scope, receive, send, None)

    def wrap(self, app: ASGIApp) -> ASGIApp:
        """An ASGI app that serves the transport's paths and passes the rest to ``app``."""

        async def transport_then_app(scope: Scope, receive: Receive, send: Send) -> None:
            await self._dispatch(scope, receive, send, app)

        return transport_then_app

    def init_app(self, app: Any) -> None:
        """Install on a Quart / Quart-Trio app, keeping the app object itself as the ASGI app."""
        app.asgi_app = self.wrap(app.asgi_app)

    async def _dispatch(self, scope: Scope, receive: Receive, send: Send, app: ASGIApp | None) -> None:
        kind = scope["type"]
        if kind == "http":
            if self.forwarded is not None:
                scope = self.forwarded.apply(scope)
            if not self.host.running and not running_under_trio():
                await self._refuse_not_trio(scope, send)
                return
            path = route_path(scope)
            link = self.host.link
            if link is not None:
                session_id = self._addressed_session(path, scope)
                if session_id is not None and self.sessions.get(session_id) is None:
                    here = functools.partial(self._route_here, path, scope, send)
                    await link.forward(session_id, scope, receive, send, body_limits=self.body_limits, local=here)
                    return
                owner = self._addressed_worker(path, scope)
                if owner is not None and owner != link.worker_id:
                    here = functools.partial(self._route_here, path, scope, send)
                    await link.forward_to(owner, scope, receive, send, body_limits=self.body_limits, local=here)
                    return
            if await self._route(path, scope, receive, send):
                return
            if self.resource_metadata is not None and path in self.resource_metadata.paths:
                await self.resource_metadata.serve(scope, send)
                return
            if self.ops.serves(path):
                await self.ops.serve(
                    path, scope, send, metrics=self.metrics, sessions_open=len(self.sessions), draining=self.draining
                )
                return
        elif kind == "websocket":
            if self.forwarded is not None:
                scope = self.forwarded.apply(scope)
            if await self._route_websocket(route_path(scope), scope, receive, send):
                return
        elif kind == "lifespan":
            if self.host.running and app is not None:
                await app(scope, receive, send)  # a transport beside us runs the shared host
            else:
                await self.host.lifespan(scope, receive, send, app)
            return
        if app is not None:
            await app(scope, receive, send)
        elif kind == "http":
            await send_outcome(send, Outcome.NOT_FOUND)
        elif kind == "websocket":
            await send({"type": "websocket.close", "code": 1008})

    async def _route_here(self, path: str, scope: Scope, send: Send, receive: Receive) -> None:
        """A request a broker could not forward, answered by this worker (the body already read replayed)."""
        await self._route(path, scope, receive, send)

    async def _refuse_not_trio(self, scope: Scope, send: Send) -> None:
        """No lifespan ran and this is not Trio: say so on every request, and never look ready."""
        if self.ops.is_ready_path(route_path(scope)):
            await send_outcome(send, Outcome.NOT_READY, detail=NOT_TRIO)
        else:
            await send_outcome(send, Outcome.NOT_TRIO)

    def delivery_outcome(self, delivery: Delivery) -> Outcome:
        """The answer to a POSTed message the session took or refused (one rule for every transport).

        An idle session ends as soon as a drain starts; its client should still
        hear "shutting down, retry elsewhere", as documented, not "no such session".
        """
        if delivery is Delivery.GONE and self.draining:
            return Outcome.SHUTTING_DOWN
        return _DELIVERY_OUTCOME[delivery]

    def _cors_headers(self, head: RequestHead) -> RawHeaders:
        if self.cors is None:
            return _NO_HEADERS
        origin = head.header(b"origin")
        if origin is None or not self.cors.allows(origin):
            return _NO_HEADERS
        return self.cors.response_headers(origin)

    # -- shutting down -------------------------------------------------------------------------------
    @property
    def draining(self) -> bool:
        return self.host.draining

    async def drain(self, grace_period: float) -> None:
        """Stop opening sessions and let the open ones finish, then end every stream cleanly.

        New sessions get ``503`` at once and the readiness probe turns ``503``.
        Each session stops taking new messages (``503``), its handler finishes
        the requests it accepted, and its streams end with a complete body.
        Sessions still busy after ``grace_period`` seconds are cancelled.
        Returns when every stream has ended, and never much later than
        ``grace_period``.
        """
        await self.host.drain(grace_period)

    async def close_all_sessions(self, reason: str = "server shutting down") -> None:
        """Close every session at once and wait (bounded) for their tasks to unwind."""
        await self.host.close_all_sessions(reason)
