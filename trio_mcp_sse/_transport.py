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
from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import quote

import trio

from ._http import ASGIApp, Outcome, Receive, Scope, Send, header, send_outcome
from ._jsonrpc import InvalidMessage, parse_message
from ._security import SecuritySettings
from ._session import (
    Delivery,
    Incoming,
    Session,
    SessionHandler,
    SessionLimits,
    SessionManager,
    SessionRegistry,
    is_session_id,
)
from ._sse import encode_event, encode_message_event

__all__ = ["SseServerTransport"]

log = logging.getLogger("trio_mcp_sse")

_STREAM_HEADERS: Final = [
    (b"content-type", b"text/event-stream"),
    (b"cache-control", b"no-cache, no-transform"),
    (b"x-accel-buffering", b"no"),
]
_KEEPALIVE: Final = b": ping\n\n"
_MAX_COALESCED: Final = 64


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


class SseServerTransport:
    """Serve MCP sessions over HTTP+SSE.

    ``handler`` is the server layer: an async callable run once per session
    (for example :meth:`trio_mcp_sse.MCPServer.run_session`).

    Use it as a whole ASGI app (``hypercorn --worker-class trio mod:transport``),
    mount it on another ASGI app with :meth:`wrap`, or install it on a
    Quart-Trio app with :meth:`init_app`.  Either way it must see the ASGI
    lifespan to own the nursery its session tasks run in; without one (some
    sub-app mounts) each session task is hosted by its own GET request instead.

    Options:

    ``sse_path`` / ``message_path``
        Where the stream and the POST intake live, relative to the mount point.
    ``keepalive_interval``
        Seconds of stream silence before an SSE comment (``: ping``) is sent, so
        proxies and client read timeouts do not cut an idle session; ``None``
        disables it.
    ``security``
        Host/Origin allow-lists and the body limit (:class:`SecuritySettings`).
    ``limits``
        Channel sizes and timeouts per session (:class:`SessionLimits`).
    ``registry``
        Where sessions are looked up (:class:`SessionRegistry`); in-process by
        default.
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
        registry: SessionRegistry | None = None,
    ) -> None:
        for name, path in (("sse_path", sse_path), ("message_path", message_path)):
            if not path.startswith("/"):
                raise ValueError(f"{name} must start with '/': {path!r}")
        if sse_path == message_path:
            raise ValueError("sse_path and message_path must differ")
        if keepalive_interval is not None and keepalive_interval <= 0:
            raise ValueError("keepalive_interval must be > 0 or None")
        self.sse_path = sse_path
        self.message_path = message_path
        self.keepalive_interval = keepalive_interval
        self.security = security or SecuritySettings()
        self.sessions = SessionManager(handler, limits=limits, registry=registry)

    # -- ASGI entry points -------------------------------------------------------------
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._dispatch(scope, receive, send, None)

    def wrap(self, app: ASGIApp) -> ASGIApp:
        """An ASGI app that serves the transport's two paths and passes the rest to ``app``."""

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
            if path == self.sse_path:
                await self._serve_stream(scope, receive, send)
                return
            if path == self.message_path:
                try:
                    outcome, detail = await self._accept_message(scope, receive)
                except _ClientGone:
                    return  # nobody is left to answer
                await send_outcome(send, outcome, allow=b"POST", detail=detail)
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
        async with self.sessions.run():
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

    async def close_all_sessions(self, reason: str = "server shutting down") -> None:
        """Close every session and wait (bounded) for their tasks to unwind."""
        async with trio.open_nursery() as nursery:
            for session in self.sessions.registry:
                nursery.start_soon(self.sessions.close_session, session, reason)

    # -- admission -----------------------------------------------------------------------
    def _admit(self, scope: Scope) -> Outcome | None:
        """DNS-rebinding protection shared by both endpoints."""
        server = scope.get("server")
        server_host = server[0] if server else None
        host = header(scope, b"host")
        if not self.security.host_allowed(host, server_host):
            return Outcome.MISDIRECTED_HOST
        if not self.security.origin_allowed(header(scope, b"origin"), host, server_host):
            return Outcome.FORBIDDEN_ORIGIN
        return None

    # -- GET: the event stream -----------------------------------------------------------
    def endpoint_for(self, scope: Scope, session: Session) -> str:
        """The relative URI the client POSTs to, including the mount prefix."""
        prefix = quote(scope.get("root_path", "") + self.message_path, safe="/")
        return f"{prefix}?session_id={session.id}"

    async def _serve_stream(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] != "GET":
            await send_outcome(send, Outcome.METHOD_NOT_ALLOWED, allow=b"GET")
            return
        refusal = self._admit(scope)
        if refusal is not None:
            await send_outcome(send, refusal)
            return
        headers = _HeaderView(scope["headers"])
        if self.sessions.running:
            # The usual case: the session task lives in the manager's nursery.  No
            # nursery of our own, which would cost ~1 KB per open stream.
            await self._stream_session(scope, receive, send, headers, None)
            return
        async with trio.open_nursery() as request_nursery:
            await self._stream_session(scope, receive, send, headers, request_nursery)

    async def _stream_session(
        self, scope: Scope, receive: Receive, send: Send, headers: _HeaderView, nursery: trio.Nursery | None
    ) -> None:
        session = await self.sessions.open_session(headers=headers, nursery=nursery)
        try:
            await self._stream(scope, receive, send, session)
        finally:
            session.outgoing.close()
            await self.sessions.close_session(session, "stream ended")

    async def _stream(self, scope: Scope, receive: Receive, send: Send, session: Session) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": _STREAM_HEADERS})
        endpoint = encode_event(self.endpoint_for(scope, session), event="endpoint")
        await send({"type": "http.response.body", "body": endpoint, "more_body": True})
        peer_gone = False
        async with trio.open_nursery() as nursery:

            async def watch_for_disconnect() -> None:
                nonlocal peer_gone
                while (await receive())["type"] != "http.disconnect":
                    pass
                peer_gone = True
                nursery.cancel_scope.cancel()

            nursery.start_soon(watch_for_disconnect)
            try:
                await self._pump(session, send)
            except OSError:  # some servers raise when writing to a closed connection
                peer_gone = True
            nursery.cancel_scope.cancel()
        if not peer_gone:
            # Handler finished (or the session was closed): end the body cleanly.
            await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _pump(self, session: Session, send: Send) -> None:
        """Move outbound messages onto the wire until the session's channel ends.

        Messages already queued are coalesced into one write; silence longer
        than the keepalive interval produces one SSE comment.  No ``yield`` or
        ``send`` happens inside a cancel scope: only the ``receive`` is timed.
        """
        outgoing = session.outgoing
        interval = self.keepalive_interval
        while True:
            data: bytes | None = None
            try:
                if interval is None:
                    data = await outgoing.receive()
                else:
                    with trio.move_on_after(interval):
                        data = await outgoing.receive()
            except trio.EndOfChannel:
                return
            if data is None:
                await send({"type": "http.response.body", "body": _KEEPALIVE, "more_body": True})
                continue
            frames = [encode_message_event(data)]
            ended = False
            while len(frames) < _MAX_COALESCED:
                try:
                    frames.append(encode_message_event(outgoing.receive_nowait()))
                except trio.WouldBlock:
                    break
                except trio.EndOfChannel:
                    ended = True
                    break
            body = frames[0] if len(frames) == 1 else b"".join(frames)
            del frames, data  # an idle stream must not keep its last (maybe large) message alive
            await send({"type": "http.response.body", "body": body, "more_body": True})
            del body
            if ended:
                return

    # -- POST: message intake --------------------------------------------------------------
    async def _accept_message(self, scope: Scope, receive: Receive) -> tuple[Outcome, str | None]:
        """Run the intake checks in the documented order; return the outcome to answer with."""
        if scope["method"] != "POST":
            return Outcome.METHOD_NOT_ALLOWED, None
        limit = self.security.max_body_size
        declared = header(scope, b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            return Outcome.BODY_TOO_LARGE, None
        refusal = self._admit(scope)
        if refusal is not None:
            return refusal, None
        if not _is_json(header(scope, b"content-type")):
            return Outcome.UNSUPPORTED_MEDIA_TYPE, None
        session_id = _query_param(scope["query_string"], b"session_id")
        if session_id is None or not is_session_id(session_id):
            return Outcome.MISSING_SESSION_ID, None
        session = self.sessions.registry.lookup(session_id, None)
        if session is None:
            return Outcome.UNKNOWN_SESSION, None
        body = await _read_body(receive, limit)
        if body is None:
            return Outcome.BODY_TOO_LARGE, None
        try:
            message = parse_message(body)
        except InvalidMessage as invalid:
            # The poster learns from the status; the session learns from its stream.
            session.send_nowait(invalid.to_json())
            return Outcome.INVALID_MESSAGE, invalid.message
        delivery = await session.deliver(Incoming(message, _HeaderView(scope["headers"])))
        return _DELIVERY_OUTCOME[delivery], None


_DELIVERY_OUTCOME: Final = {
    Delivery.ACCEPTED: Outcome.ACCEPTED,
    Delivery.GONE: Outcome.UNKNOWN_SESSION,
    Delivery.BUSY: Outcome.SESSION_BUSY,
}


class _ClientGone(Exception):
    """The client disconnected before its request body arrived."""


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
