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

from typing import Final
from urllib.parse import quote

from ._auth import AuthSettings
from ._broker import Broker
from ._cors import CorsSettings
from ._host import SessionHost
from ._http import (
    DISCONNECT_NOTICE,
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
    send_accepted,
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
from ._mount import REFUSAL_OUTCOME, MountedTransport
from ._ops import OperationalEndpoints
from ._pump import pump_events
from ._resource_metadata import ResourceMetadataEndpoint
from ._security import SecuritySettings
from ._session import (
    Delivery,
    Incoming,
    Session,
    SessionHandler,
    SessionLimits,
    SessionRefused,
    SessionRegistry,
    is_session_id,
)
from ._sse import encode_event

__all__ = ["SseServerTransport"]

_NO_HEADERS: Final[RawHeaders] = ()


class SseServerTransport(MountedTransport):
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
    ``host``
        Share sessions, limits, metrics, keepalives and drain with another
        transport of the same app (``limits``, ``registry`` and
        ``keepalive_interval`` are then the host's).
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
        broker: Broker | str | None = None,
        host: SessionHost | None = None,
    ) -> None:
        ops = OperationalEndpoints(health_path=health_path, ready_path=ready_path, metrics_path=metrics_path)
        paths = {"sse_path": sse_path, "message_path": message_path, **ops.paths}
        for name, path in paths.items():
            if not path.startswith("/"):
                raise ValueError(f"{name} must start with '/': {path!r}")
        if len(set(paths.values())) != len(paths):
            raise ValueError(f"sse_path, message_path, health_path, ready_path and metrics_path must differ: {paths}")
        security = security or SecuritySettings()
        self._own_sessions: set[str] | None = set() if host is not None else None
        """With a host shared with another transport: the sessions our streams opened (a POST
        naming one of the other transport's sessions is answered like an unknown one)."""
        host = host or SessionHost(handler, keepalive_interval=keepalive_interval, limits=limits, registry=registry, broker=broker)
        self._mount(host, security, cors, ops)
        self.sse_path = sse_path
        self.message_path = message_path
        self.keepalive_interval = keepalive_interval
        self.auth = auth
        self.resource_metadata = ResourceMetadataEndpoint.of(auth, security, [sse_path, message_path])
        if self.host.body_budget is None:
            self.host.body_budget = BodyBudget(security.body_budget)
        self.body_limits = BodyLimits(security.max_body_size, security.body_timeout, self.host.body_budget)
        # The status tables of docs/security.md, row by row.
        shared = (host_allowed(security), origin_allowed(security, cors), authenticate(auth, sse_path))
        self.stream_intake = Intake(allow_methods(b"GET", cors=cors), *shared)
        self.message_intake = Intake(
            allow_methods(b"POST", cors=cors),
            declared_body_within(security.max_body_size),
            *shared,
            content_type_json(),
            session_id_in_query(),
        )

    def _addressed_session(self, path: str, scope: Scope) -> str | None:
        if path != self.message_path or scope["method"] != "POST":
            return None
        session_id = RequestHead.from_scope(scope).query_param(b"session_id")
        return session_id if session_id is not None and is_session_id(session_id) else None

    async def _route(self, path: str, scope: Scope, receive: Receive, send: Send) -> bool:
        if path == self.message_path:
            await self._serve_post(scope, receive, send)
            return True
        if path == self.sse_path:
            await self._serve_stream(scope, receive, send)
            return True
        return False

    # -- answering -----------------------------------------------------------------------
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
            await self._answer(scope, send, head, Answer(REFUSAL_OUTCOME[refused.reason]))
            return
        cors = self._cors_headers(head)
        del head, decision, admitted  # an idle stream keeps only what it needs
        self.host.stream_started()
        if self._own_sessions is not None:
            self._own_sessions.add(session.id)
        try:
            peer_gone = await pump_events(
                session,
                receive,
                send,
                clock=self.host.keepalive,
                extra_headers=cors,
                first_event=encode_event(self.endpoint_for(scope, session), event="endpoint"),
                reads_on_demand=DISCONNECT_NOTICE in scope.get("extensions", ()),
            )
            if peer_gone:
                session.close("client disconnected")
        finally:
            if self._own_sessions is not None:
                self._own_sessions.discard(session.id)
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
        if self._own_sessions is not None and session_id not in self._own_sessions:
            await self._answer(scope, send, head, Answer(self.delivery_outcome(Delivery.GONE)))
            return
        try:
            body = await read_body(receive, self.body_limits)
        except ClientGone:
            return  # nobody is left to answer
        if isinstance(body, Outcome):
            await self._answer(scope, send, head, Answer(body))
            return
        detail = None
        try:
            message = parse_message(body)
        except InvalidMessage as invalid:
            # The poster learns from the status; the session learns from its stream.
            incoming: Incoming | InvalidMessage = invalid
            detail = invalid.message
        else:
            short = self.message_intake.refuse_message(head, admitted, message)
            if short is not None:  # a tool its token's scopes do not cover: 403, so the client can step up
                session = self.sessions.get(session_id)
                if session is None or session.principal != admitted.principal:
                    # Not this caller's session: the same 404 as for any other message, so a
                    # challenge never tells that a session exists.
                    short = Answer(self.delivery_outcome(Delivery.GONE))
                await self._answer(scope, send, head, short)
                return
            incoming = Incoming(message, HeaderView(scope["headers"]), admitted.token)
        delivery = await self.sessions.deliver(session_id, admitted.principal, incoming)
        if delivery is Delivery.ACCEPTED:
            await send_accepted(send, self._cors_headers(head))
        else:
            await self._answer(
                scope, send, head, Answer(self.delivery_outcome(delivery)), detail if delivery is Delivery.REJECTED else None
            )
