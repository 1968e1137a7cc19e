"""The HTTP+SSE transport (MCP revision 2024-11-05): a router over two endpoints, and a lifespan.

``GET {sse_path}``: the stream intake table -> the host's manager opens a
session -> :func:`pump_events` answers ``200`` with an ``endpoint`` event and
then every queued message as ``event: message`` -> when the client goes away
the session is closed; when the session ends the body ends cleanly.

``POST {message_path}?session_id=...``: the message intake table -> the body
(counted against the limit) -> parse -> :meth:`SessionManager.deliver` (through
the registry: the POST never holds a session) -> ``202`` once the message is
in the session's inbound channel, or the :class:`Outcome` of the refusal.

What this module adds to the shared pieces is routing, the order of its
intake rows, and the endpoint URI.  Admission lives in ``_intake``, the pump in
``_pump``, the probes in ``_ops``, sessions/keepalives/drain in ``_host``.

Both endpoints are answered at the ASGI level, before any framework builds a
request object: they are the per-message hot path.  Everything else (other
routes, blueprints, lifespan hooks) belongs to the application this transport
is mounted on, e.g. a Quart-Trio app (:meth:`SseServerTransport.init_app`).
"""

from __future__ import annotations

from typing import Any, Final
from urllib.parse import quote

from ._auth import AuthSettings
from ._cors import CorsSettings
from ._forwarded import ForwardedHeaders
from ._host import NOT_TRIO, SessionHost, running_under_trio
from ._http import (
    ASGIApp,
    BodyBudget,
    BodyLimits,
    ClientGone,
    HeaderView,
    Outcome,
    RawHeaders,
    Receive,
    Scope,
    Send,
    peer_of,
    read_body,
    route_path,
    send_outcome,
)
from ._intake import (
    Admit,
    Answer,
    Intake,
    RequestHead,
    VerifyToken,
    allow_methods,
    authenticate,
    content_type_json,
    declared_body_within,
    host_allowed,
    origin_allowed,
    send_answer,
    session_id_in_query,
    settle,
)
from ._jsonrpc import InvalidMessage, parse_message
from ._metrics import Metrics
from ._ops import OperationalEndpoints
from ._pump import pump_events
from ._security import SecuritySettings
from ._session import (
    Delivery,
    Incoming,
    Refusal,
    Session,
    SessionHandler,
    SessionLimits,
    SessionManager,
    SessionRefused,
    SessionRegistry,
)
from ._sse import encode_event

__all__ = ["SseServerTransport"]

_NO_HEADERS: Final[RawHeaders] = ()
_REFUSAL_OUTCOME: Final = {Refusal.DRAINING: Outcome.SHUTTING_DOWN, Refusal.AT_CAPACITY: Outcome.TOO_MANY_SESSIONS}
_DELIVERY_OUTCOME: Final = {
    Delivery.ACCEPTED: Outcome.ACCEPTED,
    Delivery.REJECTED: Outcome.INVALID_MESSAGE,
    Delivery.GONE: Outcome.UNKNOWN_SESSION,
    Delivery.BUSY: Outcome.SESSION_BUSY,
    Delivery.DRAINING: Outcome.SHUTTING_DOWN,
}


class SseServerTransport:
    """Serve MCP sessions over HTTP+SSE.

    ``handler`` is the server layer: an async callable run once per session
    (for example :meth:`trio_mcp_sse.MCPServer.run_session`).

    Use it as a whole ASGI app (``hypercorn --worker-class trio mod:transport``),
    mount it on another ASGI app with :meth:`wrap`, or install it on a
    Quart-Trio app with :meth:`init_app`.  Either way it should see the ASGI
    lifespan, which runs the nursery its session tasks live in; without one
    (some sub-app mounts) the first open stream runs it instead.

    Options (every one documented in ``docs/operations.md``):

    ``sse_path`` / ``message_path``
        Where the stream and the POST intake live, relative to the mount point.
    ``keepalive_interval``
        Seconds of stream silence before an SSE comment (``: ping``) is sent, so
        proxies and client read timeouts do not cut an idle session; ``None``
        disables it.
    ``security``
        Host/Origin allow-lists and the body limit (:class:`SecuritySettings`).
    ``limits``
        Session count, idle timeout, channel sizes and timeouts (:class:`SessionLimits`).
    ``auth``
        Bearer-token authentication and principal binding (:class:`AuthSettings`).
    ``cors``
        Cross-origin access for browser clients (:class:`CorsSettings`); off by default.
    ``health_path`` / ``ready_path``
        Liveness (always ``200`` while the process serves) and readiness (``503``
        while draining); ``None`` disables either.
    ``metrics_path``
        Prometheus text exposition of the counters; ``None`` (default) disables it.
    ``registry``
        Where messages for a session id are delivered (:class:`SessionRegistry`);
        in-process by default.
    """

    def __init__(
        self,
        handler: SessionHandler,
        *,
        sse_path: str = "/sse",
        message_path: str = "/messages/",
        keepalive_interval: float | None = 15.0,
        security: SecuritySettings | None = None,
        limits: SessionLimits | None = None,
        auth: AuthSettings | None = None,
        cors: CorsSettings | None = None,
        health_path: str | None = "/healthz",
        ready_path: str | None = "/readyz",
        metrics_path: str | None = None,
        registry: SessionRegistry | None = None,
    ) -> None:
        self.ops = OperationalEndpoints(health_path=health_path, ready_path=ready_path, metrics_path=metrics_path)
        paths = {"sse_path": sse_path, "message_path": message_path, **self.ops.paths}
        for name, path in paths.items():
            if not path.startswith("/"):
                raise ValueError(f"{name} must start with '/': {path!r}")
        if len(set(paths.values())) != len(paths):
            raise ValueError(f"sse_path, message_path, health_path, ready_path and metrics_path must differ: {paths}")
        self.host = SessionHost(handler, keepalive_interval=keepalive_interval, limits=limits, registry=registry)
        self.sessions: SessionManager = self.host.sessions
        self.metrics: Metrics = self.host.metrics
        self.sse_path = sse_path
        self.message_path = message_path
        self.keepalive_interval = keepalive_interval
        self.security = security = security or SecuritySettings()
        self.auth = auth
        self.cors = cors
        self.forwarded = ForwardedHeaders(security.trusted_proxies) if security.trusted_proxies else None
        """Applied to every request's scope when trusted proxies are configured (off by default)."""
        self.body_limits = BodyLimits(security.max_body_size, security.body_timeout, BodyBudget(security.body_budget))
        # The status tables of docs/security.md, row by row.
        shared = (host_allowed(security), origin_allowed(security, cors), authenticate(auth))
        self.stream_intake = Intake(allow_methods(b"GET", cors=cors), *shared)
        self.message_intake = Intake(
            allow_methods(b"POST", cors=cors),
            declared_body_within(security.max_body_size),
            *shared,
            content_type_json(),
            session_id_in_query(),
        )

    @property
    def draining(self) -> bool:
        return self.host.draining

    async def drain(self, grace_period: float) -> None:
        """Stop opening sessions and let the open ones finish, then end every stream cleanly.

        New streams get ``503`` at once and ``ready_path`` turns ``503``.  Each
        session stops taking new messages (POSTs get ``503``), its handler
        finishes the requests it accepted, and its stream ends with a complete
        body.  Sessions still busy after ``grace_period`` seconds are cancelled.
        Returns when every stream has ended, and never much later than
        ``grace_period``.
        """
        await self.host.drain(grace_period)

    async def close_all_sessions(self, reason: str = "server shutting down") -> None:
        """Close every session at once and wait (bounded) for their tasks to unwind."""
        await self.host.close_all_sessions(reason)

    # -- ASGI entry points -------------------------------------------------------------
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
            if path == self.message_path:
                await self._serve_post(scope, receive, send)
                return
            if path == self.sse_path:
                await self._serve_stream(scope, receive, send)
                return
            if self.ops.serves(path):
                await self.ops.serve(
                    path, scope, send, metrics=self.metrics, sessions_open=len(self.sessions), draining=self.draining
                )
                return
        elif kind == "lifespan":
            await self.host.lifespan(scope, receive, send, app)
            return
        if app is not None:
            await app(scope, receive, send)
        elif kind == "http":
            await send_outcome(send, Outcome.NOT_FOUND)
        elif kind == "websocket":
            await send({"type": "websocket.close", "code": 1008})

    async def _refuse_not_trio(self, scope: Scope, send: Send) -> None:
        """No lifespan ran and this is not Trio: say so on every request, and never look ready."""
        if self.ops.is_ready_path(route_path(scope)):
            await send_outcome(send, Outcome.NOT_READY, detail=NOT_TRIO)
        else:
            await send_outcome(send, Outcome.NOT_TRIO)

    # -- answering -----------------------------------------------------------------------
    def _cors_headers(self, head: RequestHead) -> RawHeaders:
        if self.cors is None:
            return _NO_HEADERS
        origin = head.header(b"origin")
        if origin is None or not self.cors.allows(origin):
            return _NO_HEADERS
        return self.cors.response_headers(origin)

    async def _answer(
        self, scope: Scope, send: Send, head: RequestHead, answer: Answer, detail: str | None = None
    ) -> None:
        await send_answer(
            send, answer, metrics=self.metrics, cors_headers=self._cors_headers(head), detail=detail, scope=scope
        )

    async def _admit(
        self, intake: Intake, scope: Scope, head: RequestHead, decision: Answer | VerifyToken, send: Send
    ) -> Admit | None:
        """Off the usual path: verify a token, or answer a refusal (then ``None``)."""
        settled = await settle(intake, head, decision, self.auth)
        if isinstance(settled, Admit):
            return settled
        await self._answer(scope, send, head, settled)
        return None

    # -- GET: the event stream -----------------------------------------------------------
    def endpoint_for(self, scope: Scope, session: Session) -> str:
        """The relative URI the client POSTs to, including the mount prefix."""
        prefix = quote(scope.get("root_path", "") + self.message_path, safe="/")
        return f"{prefix}?session_id={session.id}"

    async def _serve_stream(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self.host.running:  # no lifespan reached us: this stream hosts the sessions
            async with self.host.hosting():
                await self._serve_stream(scope, receive, send)
            return
        head = RequestHead.from_scope(scope)
        decision = self.stream_intake.decide(head)
        admitted = decision if isinstance(decision, Admit) else await self._admit(self.stream_intake, scope, head, decision, send)
        if admitted is None:
            return
        try:
            session = await self.sessions.open_session(
                principal=admitted.principal, headers=HeaderView(scope["headers"]), peer=peer_of(scope)
            )
        except SessionRefused as refused:
            await self._answer(scope, send, head, Answer(_REFUSAL_OUTCOME[refused.reason]))
            return
        cors = self._cors_headers(head)
        del head, decision, admitted  # an idle stream keeps only what it needs
        self.host.stream_started()
        try:
            peer_gone = await pump_events(
                session,
                receive,
                send,
                clock=self.host.keepalive,
                extra_headers=cors,
                first_event=encode_event(self.endpoint_for(scope, session), event="endpoint"),
            )
            if peer_gone:
                session.close("client disconnected")
        finally:
            session.outgoing.close()
            await self.sessions.close_session(session, "stream ended")
            self.host.stream_ended()

    # -- POST: message intake --------------------------------------------------------------
    async def _serve_post(self, scope: Scope, receive: Receive, send: Send) -> None:
        head = RequestHead.from_scope(scope)
        decision = self.message_intake.decide(head)
        admitted = decision if isinstance(decision, Admit) else await self._admit(self.message_intake, scope, head, decision, send)
        if admitted is None:  # (one await less on the usual path)
            return
        session_id = head.query_param(b"session_id")
        assert session_id is not None  # the intake checked it
        try:
            body = await read_body(receive, self.body_limits)
        except ClientGone:
            return  # nobody is left to answer
        if isinstance(body, Outcome):
            await self._answer(scope, send, head, Answer(body))
            return
        detail = None
        try:
            incoming: Incoming | InvalidMessage = Incoming(parse_message(body), HeaderView(scope["headers"]))
        except InvalidMessage as invalid:
            # The poster learns from the status; the session learns from its stream.
            incoming, detail = invalid, invalid.message
        delivery = await self.sessions.deliver(session_id, admitted.principal, incoming)
        if delivery is Delivery.GONE and self.draining:
            # An idle session ends as soon as the drain starts; its client should still
            # hear "shutting down, retry elsewhere", as documented, not "no such session".
            delivery = Delivery.DRAINING
        if delivery is Delivery.ACCEPTED:
            await send_outcome(send, Outcome.ACCEPTED, extra_headers=self._cors_headers(head))
        else:
            await self._answer(scope, send, head, Answer(_DELIVERY_OUTCOME[delivery]), detail if delivery is Delivery.REJECTED else None)
