"""A WebSocket transport (non-standard): one MCP session per connection, one JSON-RPC message per text frame.

WebSocket is not an MCP transport: the specification defines stdio and
Streamable HTTP (HTTP+SSE before it), and a proposal for WebSocket (SEP-1288)
is a draft.  The official TypeScript SDK still ships ``WebSocketClientTransport``
(subprotocol ``mcp``, one JSON-RPC message per text frame) and some gateways
speak it, so this transport serves exactly that, on the same session core as
the HTTP transports (see ``docs/websocket.md``).

Theory of operation
-------------------
``websocket.connect`` -> the intake table (Host 421, Origin 403, bearer token
401/503: the rows every transport shares) -> the ``mcp`` subprotocol (400) ->
the host's manager opens a session (503 at the cap or while draining).  A
refusal is an HTTP response on the upgrade when the ASGI server offers the
``websocket.http.response`` extension (hypercorn does), otherwise a close
before accepting, which the server answers with ``403``.  Then the upgrade is
accepted with subprotocol ``mcp`` and the connection's task owns a nursery of
two tasks:

* the *reader*: frames -> size bound -> :func:`parse_message` ->
  :meth:`Session.deliver`.  A frame it cannot use ends the connection with the
  close code that says why (:class:`CloseCode`); when the client has been
  silent for ``ping_interval`` it sends a JSON-RPC ``ping`` (the one request
  either MCP peer must answer at any time; ASGI gives an application no
  WebSocket ping frames) and ends the connection if nothing arrives within
  ``ping_timeout``.
* the *writer*: the session's outbound channel -> one text frame per message.
  When the channel ends the session is over (handler returned, drained, closed)
  and the close code comes from how it ended (:func:`close_for_session`).

The first of the two to finish decides the close and cancels the other; the
session is then closed (bounded, shielded) and the close frame sent.  A client
that disconnects is not an error: its session is closed and nothing is logged
as a failure.
"""

from __future__ import annotations

import contextlib
import enum
import itertools
import logging
import time
from dataclasses import dataclass
from typing import Final

import trio

from ._auth import AccessToken, AuthSettings
from ._broker import Broker
from ._cors import CorsSettings
from ._host import SessionHost
from ._http import (
    HeaderView,
    Message,
    Outcome,
    Receive,
    Scope,
    Send,
)
from ._intake import (
    Admit,
    Answer,
    Intake,
    RequestHead,
    authenticate,
    host_allowed,
    origin_allowed,
    send_answer,
    settle,
)
from ._jsonrpc import (
    PARSE_ERROR,
    InvalidMessage,
    JSONRPCError,
    JSONRPCRequest,
    JSONRPCResponse,
    error_response,
    parse_message,
)
from ._mount import MountedTransport
from ._ops import OperationalEndpoints
from ._resource_metadata import ResourceMetadataEndpoint
from ._security import SecuritySettings
from ._session import (
    Delivery,
    Incoming,
    Refusal,
    Session,
    SessionHandler,
    SessionLimits,
    SessionRefused,
    SessionRegistry,
)

__all__ = ["SUBPROTOCOL", "CloseCode", "WebSocketServerTransport", "WebSocketSettings", "close_for_session"]

log = logging.getLogger("trio_mcp_sse")

SUBPROTOCOL: Final = "mcp"
"""The subprotocol the TypeScript SDK's ``WebSocketClientTransport`` asks for; required."""
HTTP_RESPONSE_EXTENSION: Final = "websocket.http.response"
PING_ID_PREFIX: Final = "trio-mcp-sse/ws-ping/"
"""Ids of the transport's liveness pings: strings, so never one of the server layer's integer ids."""
_CLOSE_SEND_TIMEOUT: Final = 2.0
_SHUTTING_DOWN_CODE: Final = -32000


class CloseCode(enum.IntEnum):
    """The close codes this transport sends (RFC 6455 section 7.4), and what each means here."""

    NORMAL = 1000
    """The session ended: the handler returned."""
    GOING_AWAY = 1001
    """The server is draining or shutting down, or the session was idle too long: reconnect later."""
    PROTOCOL_ERROR = 1002
    """A text frame held JSON that is not one JSON-RPC message (a batch, a bare value, a bad envelope)."""
    UNSUPPORTED_DATA = 1003
    """A binary frame: messages are JSON text."""
    INVALID_PAYLOAD = 1007
    """A text frame that is not JSON."""
    POLICY_VIOLATION = 1008
    """The client stopped reading (its outbound queue stayed full); also the pre-accept close where an
    ASGI server cannot send an HTTP refusal."""
    MESSAGE_TOO_BIG = 1009
    """A frame over ``max_message_size``."""
    INTERNAL_ERROR = 1011
    """The session's handler failed, or the client did not answer a liveness ping in time."""
    TRY_AGAIN_LATER = 1013
    """The session's inbound queue stayed full for ``deliver_timeout``."""


@dataclass(frozen=True, slots=True)
class Close:
    """How a connection ends: the close frame to send (``code`` ``None``: the peer is gone, send none)."""

    code: CloseCode | None
    reason: str
    session_reason: str
    """What the session's close reason becomes (metrics and logs)."""


_PEER_GONE: Final = Close(None, "", "client disconnected")
_BY_SESSION_REASON: Final = {
    "slow consumer": CloseCode.POLICY_VIOLATION,
    "handler failed": CloseCode.INTERNAL_ERROR,
    "idle timeout": CloseCode.GOING_AWAY,
    "server shutting down": CloseCode.GOING_AWAY,
}


def close_for_session(close_reason: str | None, *, draining: bool) -> tuple[CloseCode, str]:
    """The close frame for a session that ended on the server's side, from its close reason."""
    if close_reason is None:
        return (CloseCode.GOING_AWAY, "server shutting down") if draining else (CloseCode.NORMAL, "session ended")
    return _BY_SESSION_REASON.get(close_reason, CloseCode.NORMAL), close_reason


@dataclass(frozen=True, slots=True)
class WebSocketSettings:
    """Options of the WebSocket endpoint (``docs/websocket.md``).

    ``path``
        Where the endpoint lives, relative to the mount point.
    ``max_message_size``
        Largest text frame accepted, in UTF-8 bytes; a larger one closes the
        connection with 1009.  ``None``: the HTTP body limit
        (``SecuritySettings.max_body_size``, 4 MiB), so a message has one bound
        whatever transport carries it.  (The ASGI server has its own, larger
        bound on what it buffers: hypercorn's ``websocket_max_message_size``, 16 MiB.)
    ``ping_interval``
        Seconds of silence from the client before the server pings it
        (JSON-RPC ``ping``); ``None`` disables liveness checks.
    ``ping_timeout``
        Seconds the client has to send anything after a ping before the
        connection is closed with 1011.
    """

    path: str = "/ws"
    max_message_size: int | None = None
    ping_interval: float | None = 30.0
    ping_timeout: float = 10.0

    def __post_init__(self) -> None:
        if not self.path.startswith("/"):
            raise ValueError(f"path must start with '/': {self.path!r}")
        if self.max_message_size is not None and self.max_message_size < 1:
            raise ValueError("max_message_size must be >= 1 or None")
        if self.ping_interval is not None and not self.ping_interval > 0:
            raise ValueError("ping_interval must be > 0 or None")
        if not self.ping_timeout > 0:
            raise ValueError("ping_timeout must be > 0")


def _websocket_response(send: Send) -> Send:
    """``send`` for an HTTP refusal of the upgrade: ``http.response.*`` becomes ``websocket.http.response.*``."""

    async def send_as_websocket_response(message: Message) -> None:
        await send({**message, "type": "websocket." + message["type"]})

    return send_as_websocket_response


class _Wire:
    """The accepted connection's sending side: frames and one close, never interleaved."""

    def __init__(self, send: Send) -> None:
        self._send = send
        self._lock = trio.Lock()
        self.closed = False

    async def send_text(self, data: bytes) -> None:
        async with self._lock:
            if self.closed:
                return
            try:
                await self._send({"type": "websocket.send", "text": data.decode("utf-8")})
            except OSError:
                # Some servers raise once the client is gone (hypercorn drops the frame);
                # the reader is about to see the disconnect.
                self.closed = True

    async def close(self, code: CloseCode, reason: str) -> None:
        """Send the close frame (once), even while the connection's tasks are cancelled."""
        with trio.CancelScope(shield=True), trio.move_on_after(_CLOSE_SEND_TIMEOUT):
            async with self._lock:
                if self.closed:
                    return
                self.closed = True
                with contextlib.suppress(OSError):  # some servers raise once the connection is gone
                    await self._send({"type": "websocket.close", "code": int(code), "reason": reason[:120]})


class WebSocketServerTransport(MountedTransport):
    """Serve MCP sessions over WebSocket (non-standard; ``docs/websocket.md``).

    ``handler`` is the server layer, as for :class:`SseServerTransport`.  Use it
    as a whole ASGI app, mount it with :meth:`wrap`, or install it on a
    Quart-Trio app with :meth:`init_app`.

    ``settings``: :class:`WebSocketSettings`; ``security``, ``limits``,
    ``auth``, ``cors``, ``registry``: as for :class:`SseServerTransport`.
    ``host``: share sessions, limits, metrics and drain with the other
    transports of the same app (what :meth:`MCPServer.http_app` and
    :meth:`MCPServer.sse_app` do; give them the same ``security``, ``auth``
    and ``cors`` too).
    """

    def __init__(
        self,
        handler: SessionHandler,
        *,
        settings: WebSocketSettings | None = None,
        security: SecuritySettings | None = None,
        limits: SessionLimits | None = None,
        auth: AuthSettings | None = None,
        cors: CorsSettings | None = None,
        registry: SessionRegistry | None = None,
        broker: Broker | str | None = None,
        host: SessionHost | None = None,
    ) -> None:
        security = security or SecuritySettings()
        host = host or SessionHost(handler, keepalive_interval=None, limits=limits, registry=registry, broker=broker)
        # No probes of its own: beside the HTTP transports (http_app, sse_app) theirs answer.
        self._mount(host, security, cors, OperationalEndpoints(health_path=None, ready_path=None, metrics_path=None))
        self.settings = settings = settings or WebSocketSettings()
        self.path = settings.path
        self.auth = auth
        self.resource_metadata = ResourceMetadataEndpoint.of(auth, security, [self.path])
        self.max_message_size = settings.max_message_size or security.max_body_size
        # The upgrade is a GET the ASGI server has already checked: the rows that follow the method row.
        self.intake = Intake(host_allowed(security), origin_allowed(security, cors), authenticate(auth, self.path))
        self._ping_ids = itertools.count(1)

    async def _route_websocket(self, path: str, scope: Scope, receive: Receive, send: Send) -> bool:
        if path != self.path:
            return False
        await self._serve(scope, receive, send)
        return True

    # -- admission ---------------------------------------------------------------------------
    async def _refuse(self, scope: Scope, send: Send, outcome: Outcome, answer: Answer | None = None) -> None:
        """Refuse the upgrade: an HTTP answer where the server supports it, else a close before accept."""
        if HTTP_RESPONSE_EXTENSION in (scope.get("extensions") or {}):
            await send_answer(_websocket_response(send), answer or Answer(outcome), metrics=self.metrics)
        else:
            self.metrics.rejections[outcome.label] += 1
            await send({"type": "websocket.close", "code": int(CloseCode.POLICY_VIOLATION)})

    async def _admit(self, scope: Scope, send: Send, headers: HeaderView) -> tuple[Session, AccessToken | None] | None:
        server = scope.get("server")
        head = RequestHead("GET", scope["headers"], scope.get("query_string", b""), server[0] if server else None)
        decision = self.intake.decide(head)
        if not isinstance(decision, Admit):
            settled = await settle(self.intake, head, decision, self.auth)
            if not isinstance(settled, Admit):
                await self._refuse(scope, send, settled.outcome, settled)
                return None
            decision = settled
        # The ASGI server has parsed the offered subprotocols for us.
        if SUBPROTOCOL not in (scope.get("subprotocols") or ()):
            await self._refuse(scope, send, Outcome.SUBPROTOCOL_REQUIRED)
            return None
        try:
            session = await self.sessions.open_session(principal=decision.principal, headers=headers)
            return session, decision.token
        except SessionRefused as refused:
            outcome = Outcome.SHUTTING_DOWN if refused.reason is Refusal.DRAINING else Outcome.TOO_MANY_SESSIONS
            await self._refuse(scope, send, outcome)
            return None

    # -- one connection ------------------------------------------------------------------------
    async def _serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self.host.running:  # no lifespan reached us: this connection hosts the sessions
            async with self.host.hosting():
                await self._serve(scope, receive, send)
            return
        if (await receive())["type"] != "websocket.connect":
            return  # the client left before the handshake reached the application
        headers = HeaderView(scope["headers"])
        admitted = await self._admit(scope, send, headers)
        if admitted is None:
            return
        session, token = admitted
        self.host.stream_started()
        wire = _Wire(send)
        close = _PEER_GONE
        try:
            await send({"type": "websocket.accept", "subprotocol": SUBPROTOCOL})
            close = await self._run(session, receive, wire, headers, token)
        except OSError:  # the accept could not be sent: the client is gone
            close = _PEER_GONE
        finally:
            session.close(close.session_reason)
            await self.sessions.close_session(session, close.session_reason)
            if close.code is not None:
                await wire.close(close.code, close.reason)
            self.host.stream_ended()

    async def _run(
        self, session: Session, receive: Receive, wire: _Wire, headers: HeaderView, token: AccessToken | None
    ) -> Close:
        """Reader and writer until one of them decides how the connection ends.

        The upgrade's access token covers every message of the connection, so
        the connection ends when the token expires (1008): a WebSocket cannot
        present a fresh token, its client reconnects with one.
        """
        decided: list[Close] = []
        async with trio.open_nursery() as nursery:

            async def read() -> None:
                decided.append(await self._read(session, receive, wire, headers, token))
                nursery.cancel_scope.cancel()

            if token is not None and token.expires_at is not None:
                remaining = token.expires_at - time.time()

                async def expire() -> None:
                    await trio.sleep(max(remaining, 0.0))
                    decided.append(Close(CloseCode.POLICY_VIOLATION, "access token expired", "token expired"))
                    nursery.cancel_scope.cancel()

                nursery.start_soon(expire, name="websocket token expiry")

            async def write() -> None:
                await self._write(session, wire)
                code, reason = close_for_session(session.close_reason, draining=self.host.draining)
                decided.append(Close(code, reason, session.close_reason or "session ended"))
                nursery.cancel_scope.cancel()

            nursery.start_soon(read, name="websocket reader")
            nursery.start_soon(write, name="websocket writer")
        return decided[0]

    async def _write(self, session: Session, wire: _Wire) -> None:
        async for item in session.outgoing:
            if item.data:  # (empty items: keepalive wake-ups and unanswered-request notices)
                await wire.send_text(item.data)
            del item

    async def _read(
        self, session: Session, receive: Receive, wire: _Wire, headers: HeaderView, token: AccessToken | None
    ) -> Close:
        interval, patience = self.settings.ping_interval, self.settings.ping_timeout
        pinged = False
        limit = self.max_message_size
        while True:
            wait = patience if pinged else interval
            with trio.move_on_after(wait if wait is not None else float("inf")) as silence:
                message = await receive()
            if silence.cancelled_caught:
                if pinged:
                    return Close(CloseCode.INTERNAL_ERROR, "no answer to ping", "client not answering")
                ping_id = f"{PING_ID_PREFIX}{next(self._ping_ids)}"
                await wire.send_text(b'{"jsonrpc":"2.0","id":"%s","method":"ping"}' % ping_id.encode("ascii"))
                pinged = True
                continue
            pinged = False
            kind = message["type"]
            if kind == "websocket.disconnect":
                return _PEER_GONE
            if kind != "websocket.receive":
                continue
            text = message.get("text")
            if text is None:
                return Close(CloseCode.UNSUPPORTED_DATA, "binary frames are not supported: send JSON text", "protocol error")
            # A character is at most 4 UTF-8 bytes: only a frame near the limit needs encoding to be measured.
            if len(text) > limit or (len(text) * 4 > limit and len(text.encode("utf-8", "surrogatepass")) > limit):
                return Close(CloseCode.MESSAGE_TOO_BIG, f"message over {limit} bytes", "message too big")
            del message
            try:
                parsed = parse_message(text.encode("utf-8"))
            except UnicodeEncodeError:
                return Close(CloseCode.INVALID_PAYLOAD, "not UTF-8", "protocol error")
            except InvalidMessage as invalid:
                # The client learns why as JSON-RPC too, then the connection ends.
                await wire.send_text(invalid.to_json())
                code = CloseCode.INVALID_PAYLOAD if invalid.code == PARSE_ERROR else CloseCode.PROTOCOL_ERROR
                return Close(code, invalid.message[:120], "protocol error")
            del text
            if (
                isinstance(parsed, JSONRPCResponse | JSONRPCError)
                and isinstance(parsed.id, str)
                and parsed.id.startswith(PING_ID_PREFIX)
            ):
                continue  # the answer to a liveness ping: the server layer never sent it
            delivery = await session.deliver(Incoming(parsed, headers, token))
            if delivery is Delivery.ACCEPTED:
                continue
            if delivery is Delivery.DRAINING:
                if isinstance(parsed, JSONRPCRequest):  # fail it now rather than leave it unanswered
                    session.send_nowait(
                        error_response(parsed.id, _SHUTTING_DOWN_CODE, "Server is shutting down"),
                        related_request_id=parsed.id,
                    )
                continue
            if delivery is Delivery.BUSY:
                log.warning(
                    "session %s: inbound queue full for %.1fs; closing the WebSocket",
                    session.id,
                    self.sessions.limits.deliver_timeout,
                    extra={"event": "session_busy", "session_id": session.id},
                )
                return Close(CloseCode.TRY_AGAIN_LATER, "inbound queue full", "inbound queue full")
            # GONE: the session is ending; the writer will say how.
            await trio.sleep_forever()
