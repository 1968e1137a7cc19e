"""The HTTP+SSE transport (MCP revision 2024-11-05) as lean ASGI.

Data flow
---------
``GET {sse_path}``: admission checks -> the :class:`SessionManager` opens a
session (its handler task starts in the manager's nursery) -> ``200`` with an
``endpoint`` event -> every JSON message the handler queues on the session's
outbound channel becomes one ``event: message`` -> the stream ends when the
handler ends, or the session is closed when the client goes away.

``POST {message_path}?session_id=...``: checks in the documented order ->
registry lookup -> parse -> the message goes into the session's inbound channel
-> ``202``.  Only then; a message that could not be queued gets an error status.

Both endpoints are answered at the ASGI level, before any framework builds a
request object: they are the per-message hot path.  Everything else (other
routes, blueprints, lifespan hooks) belongs to the application this transport
is mounted on, e.g. a Quart-Trio app (:meth:`SseServerTransport.init_app`).
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import quote

import trio

from ._auth import AuthSettings
from ._cors import CorsSettings
from ._http import ASGIApp, Outcome, RawHeaders, Receive, Scope, Send, header, send_outcome
from ._jsonrpc import InvalidMessage, parse_message
from ._keepalive import KeepaliveClock, Watched
from ._metrics import Metrics
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
    is_session_id,
)
from ._sse import encode_event, encode_message_event

__all__ = ["SseServerTransport", "drain_all"]

log = logging.getLogger("trio_mcp_sse")

_STREAM_HEADERS: Final = [
    (b"content-type", b"text/event-stream"),
    (b"cache-control", b"no-cache, no-transform"),
    (b"x-accel-buffering", b"no"),
]
_KEEPALIVE: Final = b": ping\n\n"
_MAX_COALESCED: Final = 64
_FLUSH_TIME: Final = 0.25  # after a drain, how long ended streams get to flush their last bytes
_NO_HEADERS: Final[RawHeaders] = ()

_running: weakref.WeakSet[SseServerTransport] = weakref.WeakSet()


async def drain_all(grace_period: float) -> None:
    """Drain every transport running in this process (what ``serve`` does on SIGTERM)."""
    async with trio.open_nursery() as nursery:
        for transport in list(_running):
            nursery.start_soon(transport.drain, grace_period)


def _route_path(scope: Scope) -> str:
    """The request path relative to the mount point (``root_path``)."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and (path == root or path.startswith(root + "/")):
        path = path[len(root) :]
    return path


def _query_param(query: bytes, name: bytes) -> str | None:
    for pair in query.split(b"&"):
        key, _, value = pair.partition(b"=")
        if key == name:
            return value.decode("latin-1")
    return None


def _is_json(content_type: str | None) -> bool:
    if content_type is None:
        return False
    return content_type.partition(";")[0].strip().lower() == "application/json"


class _Refused(Exception):
    """An admission check failed; carries what to answer."""

    def __init__(self, outcome: Outcome, headers: RawHeaders = _NO_HEADERS) -> None:
        self.outcome = outcome
        self.headers = headers


class _ClientGone(Exception):
    """The client disconnected before its request body arrived."""


_REFUSAL_OUTCOME: Final = {Refusal.DRAINING: Outcome.SHUTTING_DOWN, Refusal.AT_CAPACITY: Outcome.TOO_MANY_SESSIONS}
_DELIVERY_OUTCOME: Final = {
    Delivery.ACCEPTED: Outcome.ACCEPTED,
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
    Quart-Trio app with :meth:`init_app`.  Either way it must see the ASGI
    lifespan to own the nursery its session tasks run in; without one (some
    sub-app mounts) each session task is hosted by its own GET request instead.

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
        Where sessions are looked up (:class:`SessionRegistry`); in-process by default.
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
        paths = {"sse_path": sse_path, "message_path": message_path}
        paths |= {name: path for name, path in (("health_path", health_path), ("ready_path", ready_path), ("metrics_path", metrics_path)) if path is not None}
        for name, path in paths.items():
            if not path.startswith("/"):
                raise ValueError(f"{name} must start with '/': {path!r}")
        if len(set(paths.values())) != len(paths):
            raise ValueError(f"sse_path, message_path, health_path, ready_path and metrics_path must differ: {paths}")
        if keepalive_interval is not None and keepalive_interval <= 0:
            raise ValueError("keepalive_interval must be > 0 or None")
        self.sse_path = sse_path
        self.message_path = message_path
        self.keepalive_interval = keepalive_interval
        self.security = security or SecuritySettings()
        self.auth = auth
        self.cors = cors
        self.metrics = Metrics()
        self._keepalive = KeepaliveClock(keepalive_interval) if keepalive_interval is not None else None
        """Shared by every stream while the lifespan runs (one timer task, not one per stream)."""
        self.sessions = SessionManager(handler, limits=limits, registry=registry, metrics=self.metrics)
        self._plain_paths: dict[str, bytes] = {}
        if health_path is not None:
            self._plain_paths[health_path] = b"health"
        if ready_path is not None:
            self._plain_paths[ready_path] = b"ready"
        if metrics_path is not None:
            self._plain_paths[metrics_path] = b"metrics"
        self._open_streams = 0
        self._streams_closed = trio.Event()
        self._streams_closed.set()

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
            path = _route_path(scope)
            if path == self.message_path:
                await self._serve_post(scope, receive, send)
                return
            if path == self.sse_path:
                await self._serve_stream(scope, receive, send)
                return
            plain = self._plain_paths.get(path)
            if plain is not None:
                await self._serve_plain(plain, scope, send)
                return
        elif kind == "lifespan":
            await self._lifespan(scope, receive, send, app)
            return
        if app is not None:
            await app(scope, receive, send)
        elif kind == "http":
            await send_outcome(send, Outcome.NOT_FOUND)
        elif kind == "websocket":
            await send({"type": "websocket.close", "code": 1008})

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send, app: ASGIApp | None) -> None:
        """Own the session nursery for the server's lifetime; close sessions before the app stops."""
        async with self.sessions.run(), trio.open_nursery() as timers:
            if self._keepalive is not None:
                timers.start_soon(self._keepalive.run, name="keepalive clock")
            _running.add(self)
            try:
                if app is not None:

                    async def receive_then_close_sessions() -> Any:
                        message = await receive()
                        if message["type"] == "lifespan.shutdown":
                            await self.close_all_sessions()
                        return message

                    await app(scope, receive_then_close_sessions, send)
                    return
                while True:
                    message = await receive()
                    if message["type"] == "lifespan.startup":
                        await send({"type": "lifespan.startup.complete"})
                    elif message["type"] == "lifespan.shutdown":
                        await self.close_all_sessions()
                        await send({"type": "lifespan.shutdown.complete"})
                        return
            finally:
                _running.discard(self)
                timers.cancel_scope.cancel()

    # -- shutting down -------------------------------------------------------------------------------
    @property
    def draining(self) -> bool:
        return self.sessions.draining

    async def drain(self, grace_period: float) -> None:
        """Stop opening sessions and let the open ones finish, then end every stream cleanly.

        New streams get ``503`` at once and ``ready_path`` turns ``503``.  Each
        session stops taking new messages (POSTs get ``503``), its handler
        finishes the requests it accepted, and its stream ends with a complete
        body.  Sessions still busy after ``grace_period`` seconds are cancelled.
        Returns when every stream has ended, and never much later than
        ``grace_period``: a stream whose client stopped reading cannot be
        finished from here (see ``python -m trio_mcp_sse serve``).
        """
        deadline = trio.current_time() + grace_period
        log.info(
            "draining (up to %.1fs)",
            grace_period,
            extra={"event": "drain_started", "sessions": len(self.sessions.registry)},
        )
        await self.sessions.drain(grace_period)
        with trio.move_on_at(max(deadline, trio.current_time() + _FLUSH_TIME)):
            await self._streams_closed.wait()
        log.info("drained", extra={"event": "drain_finished", "streams_left": self._open_streams})

    async def close_all_sessions(self, reason: str = "server shutting down") -> None:
        """Close every session at once and wait (bounded) for their tasks to unwind."""
        self.sessions.draining = True
        async with trio.open_nursery() as nursery:
            for session in self.sessions.registry:
                nursery.start_soon(self.sessions.close_session, session, reason)

    # -- admission -----------------------------------------------------------------------
    def _check_origin_and_host(self, scope: Scope) -> None:
        """DNS-rebinding protection shared by both endpoints."""
        server = scope.get("server")
        server_host = server[0] if server else None
        host = header(scope, b"host")
        if not self.security.host_allowed(host, server_host):
            raise _Refused(Outcome.MISDIRECTED_HOST)
        origin = header(scope, b"origin")
        if not self.security.origin_allowed(origin, host, server_host) and not (
            self.cors is not None and self.cors.allows(origin)
        ):
            raise _Refused(Outcome.FORBIDDEN_ORIGIN)

    async def _authenticate(self, scope: Scope) -> str | None:
        """The request's principal (``None``: anonymous), or :class:`_Refused`."""
        auth = self.auth
        if auth is None:
            return None
        credentials = header(scope, b"authorization")
        if credentials is None:
            if auth.required:
                raise _Refused(Outcome.UNAUTHORIZED, ((b"www-authenticate", auth.challenge(None)),))
            return None
        scheme, _, token = credentials.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise _Refused(Outcome.INVALID_TOKEN, ((b"www-authenticate", auth.challenge("invalid_request")),))
        principal: str | None = None
        with trio.move_on_after(auth.timeout) as waited:
            try:
                principal = await auth.verify_token(token)
            except Exception:
                log.exception("token verification failed", extra={"event": "auth_error"})
                raise _Refused(Outcome.AUTH_UNAVAILABLE) from None
        if waited.cancelled_caught:
            log.warning("token verification timed out after %.1fs", auth.timeout, extra={"event": "auth_timeout"})
            raise _Refused(Outcome.AUTH_UNAVAILABLE)
        if principal is None:
            raise _Refused(Outcome.INVALID_TOKEN, ((b"www-authenticate", auth.challenge("invalid_token")),))
        return principal

    def _cors_headers(self, scope: Scope) -> RawHeaders:
        if self.cors is None:
            return _NO_HEADERS
        origin = header(scope, b"origin")
        if origin is None or not self.cors.allows(origin):
            return _NO_HEADERS
        return self.cors.response_headers(origin)

    async def _refuse(self, send: Send, outcome: Outcome, scope: Scope, *, allow: bytes = b"",
                      detail: str | None = None, headers: RawHeaders = _NO_HEADERS) -> None:
        self.metrics.rejections[outcome.label] += 1
        await send_outcome(send, outcome, allow=allow, detail=detail, extra_headers=(*headers, *self._cors_headers(scope)))

    async def _preflight(self, scope: Scope, send: Send, allow: bytes) -> None:
        """Answer a CORS preflight, or 405 when CORS is off."""
        origin = header(scope, b"origin")
        if self.cors is None or origin is None:
            await self._refuse(send, Outcome.METHOD_NOT_ALLOWED, scope, allow=allow)
        elif not self.cors.allows(origin):
            await self._refuse(send, Outcome.FORBIDDEN_ORIGIN, scope)
        else:
            await send_outcome(send, Outcome.PREFLIGHT, extra_headers=self.cors.preflight_headers(origin))

    # -- health, readiness, metrics ----------------------------------------------------------
    async def _serve_plain(self, which: bytes, scope: Scope, send: Send) -> None:
        if scope["method"] not in ("GET", "HEAD"):
            await send_outcome(send, Outcome.METHOD_NOT_ALLOWED, allow=b"GET, HEAD")
            return
        if which == b"health":
            await send_outcome(send, Outcome.OK)
        elif which == b"ready":
            await send_outcome(send, Outcome.SHUTTING_DOWN if self.draining else Outcome.OK)
        else:
            body = self.metrics.render(sessions_open=len(self.sessions.registry), draining=self.draining)
            headers = [
                (b"content-type", b"text/plain; version=0.0.4; charset=utf-8"),
                (b"content-length", str(len(body)).encode("ascii")),
                (b"cache-control", b"no-store"),
            ]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": body})

    # -- GET: the event stream -----------------------------------------------------------
    def endpoint_for(self, scope: Scope, session: Session) -> str:
        """The relative URI the client POSTs to, including the mount prefix."""
        prefix = quote(scope.get("root_path", "") + self.message_path, safe="/")
        return f"{prefix}?session_id={session.id}"

    async def _serve_stream(self, scope: Scope, receive: Receive, send: Send) -> None:
        method = scope["method"]
        if method == "OPTIONS":
            await self._preflight(scope, send, b"GET")
            return
        if method != "GET":
            await self._refuse(send, Outcome.METHOD_NOT_ALLOWED, scope, allow=b"GET")
            return
        try:
            self._check_origin_and_host(scope)
            principal = await self._authenticate(scope)
        except _Refused as refused:
            await self._refuse(send, refused.outcome, scope, headers=refused.headers)
            return
        headers = _HeaderView(scope["headers"])
        if self.sessions.running:
            # The usual case: the session task lives in the manager's nursery.  No
            # nursery of our own, which would cost ~1 KB per open stream.
            await self._stream_session(scope, receive, send, principal, headers, None, self._keepalive)
            return
        async with trio.open_nursery() as request_nursery:
            clock = None
            if self.keepalive_interval is not None:
                clock = KeepaliveClock(self.keepalive_interval)
                request_nursery.start_soon(clock.run)
            await self._stream_session(scope, receive, send, principal, headers, request_nursery, clock)
            request_nursery.cancel_scope.cancel()

    async def _stream_session(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        principal: str | None,
        headers: _HeaderView,
        nursery: trio.Nursery | None,
        clock: KeepaliveClock | None,
    ) -> None:
        try:
            session = await self.sessions.open_session(principal=principal, headers=headers, nursery=nursery)
        except SessionRefused as refused:
            await self._refuse(send, _REFUSAL_OUTCOME[refused.reason], scope)
            return
        self._open_streams += 1
        if self._streams_closed.is_set():
            self._streams_closed = trio.Event()
        try:
            await self._stream(scope, receive, send, session, clock)
        finally:
            session.outgoing.close()
            await self.sessions.close_session(session, "stream ended")
            self._open_streams -= 1
            if self._open_streams == 0:
                self._streams_closed.set()

    async def _stream(
        self, scope: Scope, receive: Receive, send: Send, session: Session, clock: KeepaliveClock | None
    ) -> None:
        headers = _STREAM_HEADERS
        cors = self._cors_headers(scope)
        if cors:
            headers = [*headers, *cors]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        endpoint = encode_event(self.endpoint_for(scope, session), event="endpoint")
        await send({"type": "http.response.body", "body": endpoint, "more_body": True})
        watched = clock.watch(session.wake_writer) if clock is not None else None
        try:
            peer_gone = await self._pump(session, receive, send, watched)
        finally:
            if clock is not None and watched is not None:
                clock.unwatch(watched)
        if peer_gone:
            session.close("client disconnected")
        else:
            # The session ended (handler returned, drained, idle, dropped): end the body cleanly.
            await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _pump(self, session: Session, receive: Receive, send: Send, watched: Watched | None) -> bool:
        """Write the session's outbound messages until its channel ends or the client leaves.

        One task does both jobs.  While nothing is queued it waits for the ASGI
        server's next event (``http.disconnect`` is the one that matters) inside
        a cancel scope, and the session cancels that scope whenever it queues
        something (``Session.on_outgoing``): a waiting stream costs one parked
        task instead of two.  Queued messages are coalesced into one write; an
        empty item is the keepalive clock asking for a keepalive comment.

        Returns whether the client went away.
        """
        outgoing = session.outgoing
        waiting: trio.CancelScope | None = None

        def wake() -> None:
            if waiting is not None:
                waiting.cancel()

        session.on_outgoing = wake
        try:
            while True:
                frames: list[bytes] = []
                keepalive = ended = False
                while len(frames) < _MAX_COALESCED:
                    try:
                        data = outgoing.receive_nowait()
                    except trio.WouldBlock:
                        break
                    except trio.EndOfChannel:
                        ended = True
                        break
                    if data:
                        frames.append(encode_message_event(data))
                    else:
                        keepalive = True
                    del data  # an idle stream must not keep its last (maybe large) message alive
                if frames or keepalive:
                    body = b"".join(frames) if frames else _KEEPALIVE
                    del frames
                    try:
                        await send({"type": "http.response.body", "body": body, "more_body": True})
                    except OSError:  # some servers raise when writing to a closed connection
                        return True
                    del body
                    if watched is not None:
                        watched.last_write = trio.current_time()
                    continue  # more may have been queued meanwhile
                if ended:
                    return False
                # Nothing queued: wait for the client (to leave) or for the session (to
                # queue something).  No checkpoint since the channel was found empty,
                # so no wake-up can have been missed.
                with trio.CancelScope() as waiting:
                    while (await receive())["type"] != "http.disconnect":
                        pass
                    return True
                waiting = None
        finally:
            session.on_outgoing = None

    # -- POST: message intake --------------------------------------------------------------
    async def _serve_post(self, scope: Scope, receive: Receive, send: Send) -> None:
        method = scope["method"]
        if method == "OPTIONS":
            await self._preflight(scope, send, b"POST")
            return
        try:
            outcome, detail = await self._accept_message(scope, receive)
        except _Refused as refused:
            await self._refuse(send, refused.outcome, scope, allow=b"POST", headers=refused.headers)
            return
        except _ClientGone:
            return  # nobody is left to answer
        if outcome is Outcome.ACCEPTED:
            cors = self._cors_headers(scope)
            await send_outcome(send, outcome, extra_headers=cors)
        else:
            await self._refuse(send, outcome, scope, detail=detail)

    async def _accept_message(self, scope: Scope, receive: Receive) -> tuple[Outcome, str | None]:
        """Run the intake checks in the documented order; return the outcome to answer with."""
        if scope["method"] != "POST":
            raise _Refused(Outcome.METHOD_NOT_ALLOWED)
        limit = self.security.max_body_size
        declared = header(scope, b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise _Refused(Outcome.BODY_TOO_LARGE)
        self._check_origin_and_host(scope)
        principal = await self._authenticate(scope)
        if not _is_json(header(scope, b"content-type")):
            raise _Refused(Outcome.UNSUPPORTED_MEDIA_TYPE)
        session_id = _query_param(scope["query_string"], b"session_id")
        if session_id is None or not is_session_id(session_id):
            raise _Refused(Outcome.MISSING_SESSION_ID)
        session = self.sessions.registry.lookup(session_id, principal)
        if session is None:
            raise _Refused(Outcome.UNKNOWN_SESSION)
        body = await _read_body(receive, limit)
        if body is None:
            raise _Refused(Outcome.BODY_TOO_LARGE)
        try:
            message = parse_message(body)
        except InvalidMessage as invalid:
            # The poster learns from the status; the session learns from its stream.
            session.send_nowait(invalid.to_json())
            return Outcome.INVALID_MESSAGE, invalid.message
        delivery = await session.deliver(Incoming(message, _HeaderView(scope["headers"])))
        return _DELIVERY_OUTCOME[delivery], None


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    """The whole request body, or ``None`` as soon as it exceeds ``limit`` bytes."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _ClientGone
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


class _HeaderView(Mapping[str, str]):
    """Request headers decoded on first use: most messages never look at them."""

    __slots__ = ("_decoded", "_raw")

    def __init__(self, raw: list[tuple[bytes, bytes]]) -> None:
        self._raw = raw
        self._decoded: dict[str, str] | None = None

    def _dict(self) -> dict[str, str]:
        if self._decoded is None:
            decoded: dict[str, str] = {}
            for key, value in self._raw:
                name = key.decode("latin-1").lower()
                text = value.decode("latin-1")
                decoded[name] = f"{decoded[name]}, {text}" if name in decoded else text
            self._decoded = decoded
        return self._decoded

    def __getitem__(self, key: str) -> str:
        return self._dict()[key.lower()]

    def __iter__(self) -> Any:
        return iter(self._dict())

    def __len__(self) -> int:
        return len(self._dict())
