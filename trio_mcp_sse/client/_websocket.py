"""The client half of the WebSocket transport (non-standard; ``docs/websocket.md``).

Theory of operation
-------------------
:func:`connect_websocket` opens the connection with trio-websocket, asking for
the ``mcp`` subprotocol (one JSON-RPC message per text frame, as the official
TypeScript SDK's ``WebSocketClientTransport`` speaks it), and refuses a server
that does not agree to it.  For the lifetime of its ``async with`` block it
owns a nursery with three tasks:

* the *reader* parses each text frame into :attr:`WebSocketConnection.incoming`;
  a binary frame or a frame that is not a JSON-RPC message is logged and
  skipped, as the HTTP+SSE client skips a bad event;
* the *writer* sends what is put into :attr:`WebSocketConnection.outgoing`;
* the *pinger* sends a WebSocket ping every ``ping_interval`` seconds and
  fails the connection when no pong arrives within ``timeout``: a peer that
  vanished without closing is noticed even while nothing else is sent.

Every wait is bounded: the handshake by ``timeout``, each send by ``timeout``,
the peer's liveness by the pings.  When the connection fails or the server
closes it, the failing task raises a typed error (:class:`WebSocketClosedError`
carries the close code); the nursery cancels the body of the ``async with`` and
the one exception comes out of the block unwrapped.
"""

from __future__ import annotations

import contextlib
import logging
import ssl
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, Final
from urllib.parse import urlsplit

import trio
import trio_websocket

from .._jsonrpc import InvalidMessage, JSONRPCMessage, parse_message
from ._errors import (
    ConnectError,
    ConnectionClosedError,
    WebSocketClosedError,
    WebSocketRejectedError,
)
from ._transport import INCOMING_BUFFER, OutgoingMessage, _describe, _detail, _encode
from ._util import raise_collapsed

__all__ = ["WebSocketConnection", "connect_websocket"]

log = logging.getLogger("trio_mcp_sse.client")

SUBPROTOCOL: Final = "mcp"
DEFAULT_MAX_MESSAGE_SIZE: Final = 16 * 1024 * 1024
"""Largest message accepted from the server, in characters (as for ``max_event_size``)."""
_CLOSE_TIMEOUT: Final = 2.0


def _check_url(url: str) -> tuple[str, int, str, bool]:
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise ValueError(f"the WebSocket URL must be an absolute ws:// or wss:// URL, got {url!r}")
    try:
        port = parts.port or (443 if parts.scheme == "wss" else 80)
    except ValueError as error:
        raise ValueError(f"not a valid URL: {url!r} ({error})") from None
    resource = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return parts.hostname, port, resource, parts.scheme == "wss"


def _closed_error(url: str, closed: trio_websocket.ConnectionClosed) -> WebSocketClosedError:
    reason = closed.reason
    code = reason.code if reason is not None else None
    text = (reason.reason or "") if reason is not None else ""
    described = f"{code} {reason.name}" if reason is not None else "no close frame"
    return WebSocketClosedError(
        f"the WebSocket connection to {url} closed ({described}" + (f": {_detail(text)}" if text else "") + ")",
        code=code,
        reason=text,
    )


class WebSocketConnection:
    """An open WebSocket connection to an MCP server (yielded by :func:`connect_websocket`).

    Like :class:`SSEConnection`, a pair of channels: :attr:`incoming` yields the
    server's messages, :attr:`outgoing` takes messages to send;
    ``receive, send = connection`` unpacks that pair.
    """

    def __init__(self, url: str, websocket: trio_websocket.WebSocketConnection, *, timeout: float) -> None:
        self.url = url
        """The URL, as given."""
        self.subprotocol: str | None = websocket.subprotocol
        self._websocket = websocket
        self._timeout = timeout
        self._closed = False
        self._incoming_send, self.incoming = trio.open_memory_channel[JSONRPCMessage](INCOMING_BUFFER)
        self.outgoing, self._outgoing_receive = trio.open_memory_channel[OutgoingMessage](0)
        self._cancel_scope: trio.CancelScope | None = None

    def __repr__(self) -> str:
        return f"<WebSocketConnection {self.url} {'closed' if self._closed else 'open'}>"

    def __iter__(self) -> Iterator[Any]:
        """``receive_channel, send_channel = connection``."""
        return iter((self.incoming, self.outgoing))

    @property
    def closed(self) -> bool:
        """True once the connection ended (for whatever reason) or the block was left."""
        return self._closed

    @property
    def close_code(self) -> int | None:
        """The close code of the closing handshake, once there was one."""
        reason = self._websocket.closed
        return reason.code if reason is not None else None

    async def send(self, message: OutgoingMessage) -> None:
        """Send one message as a text frame, waiting at most ``timeout`` for the network to take it.

        Raises :class:`ConnectionClosedError` once the connection is closed (a
        :class:`WebSocketClosedError` when the server closed it).  A send that
        cannot finish within ``timeout`` (the server stopped reading) ends the
        whole connection: half a frame cannot be taken back.
        """
        await trio.lowlevel.checkpoint()
        if self._closed:
            raise ConnectionClosedError("the connection is closed")
        text = _encode(message).decode("utf-8")
        with trio.move_on_after(self._timeout):
            try:
                await self._websocket.send_message(text)
            except trio_websocket.ConnectionClosed as closed:
                raise _closed_error(self.url, closed) from None
            return
        self._fail()
        raise ConnectionClosedError(
            f"could not send to {self.url} within {self._timeout:g} s (the server is not reading); connection closed"
        )

    def _fail(self) -> None:
        self._closed = True
        if self._cancel_scope is not None:
            self._cancel_scope.cancel()

    async def _run_writer(self) -> None:
        async with self._outgoing_receive:
            async for message in self._outgoing_receive:
                await self.send(message)

    async def _run_reader(self) -> None:
        try:
            while True:
                try:
                    data = await self._websocket.get_message()
                except trio_websocket.ConnectionClosed as closed:
                    raise _closed_error(self.url, closed) from None
                if isinstance(data, bytes):
                    log.warning("%s: ignoring a binary frame (%d bytes) from the server", self.url, len(data))
                    continue
                try:
                    message = parse_message(data.encode("utf-8"))
                except InvalidMessage as invalid:
                    log.warning("%s: ignoring an invalid message from the server: %s", self.url, invalid.message)
                    continue
                del data
                with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                    await self._incoming_send.send(message)
        finally:
            self._closed = True

    async def _run_pinger(self, interval: float) -> None:
        while True:
            await trio.sleep(interval)
            with trio.move_on_after(self._timeout):
                try:
                    await self._websocket.ping()
                except trio_websocket.ConnectionClosed as closed:
                    raise _closed_error(self.url, closed) from None
                continue
            raise WebSocketClosedError(
                f"no pong from {self.url} within {self._timeout:g} s: the connection is dead",
                code=None,
                reason="",
            )


@asynccontextmanager
async def connect_websocket(
    url: str,
    *,
    headers: Mapping[str, str] | None = None,
    timeout: float = 10.0,  # noqa: ASYNC109 -- the handshake/send/pong bound, like connect_sse's
    ping_interval: float | None = 20.0,
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
    ssl_context: ssl.SSLContext | None = None,
) -> AsyncIterator[WebSocketConnection]:
    """Open a WebSocket connection (subprotocol ``mcp``) to the MCP server at ``url`` (``ws://`` or ``wss://``).

    ``headers`` go on the upgrade request (``Authorization`` for a bearer
    token).  ``timeout`` bounds the handshake, each send and each wait for a
    pong; ``ping_interval`` is the time between pings (``None``: none);
    ``max_message_size`` bounds one message from the server (a larger one
    closes the connection with 1009).  See ``docs/websocket.md``.
    """
    host, port, resource, secure = _check_url(url)
    if not timeout > 0:
        raise ValueError(f"timeout must be > 0, got {timeout!r}")
    if ping_interval is not None and not ping_interval > 0:
        raise ValueError(f"ping_interval must be > 0 or None, got {ping_interval!r}")
    if not max_message_size >= 1:
        raise ValueError(f"max_message_size must be >= 1, got {max_message_size!r}")
    extra_headers = [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in (headers or {}).items()]
    opened = _handshake(
        url,
        trio_websocket.open_websocket(
            host,
            port,
            resource,
            use_ssl=ssl_context if ssl_context is not None else secure,
            subprotocols=[SUBPROTOCOL],
            extra_headers=extra_headers,
            max_message_size=max_message_size,
            connect_timeout=timeout,
            disconnect_timeout=_CLOSE_TIMEOUT,
        ),
        timeout,
    )
    async with opened as websocket:
        connection = WebSocketConnection(url, websocket, timeout=timeout)
        if websocket.subprotocol != SUBPROTOCOL:
            raise ConnectError(
                f"{url} accepted the WebSocket without the {SUBPROTOCOL!r} subprotocol: is it an MCP endpoint?"
            )
        try:
            async with trio.open_nursery() as nursery:
                connection._cancel_scope = nursery.cancel_scope
                nursery.start_soon(connection._run_reader, name="websocket reader")
                nursery.start_soon(connection._run_writer, name="websocket writer")
                if ping_interval is not None:
                    nursery.start_soon(connection._run_pinger, ping_interval, name="websocket pinger")
                try:
                    yield connection
                finally:
                    connection._closed = True
                    nursery.cancel_scope.cancel()
        except BaseExceptionGroup as group:
            raise_collapsed(group)
        finally:
            connection._closed = True
            connection._incoming_send.close()


@asynccontextmanager
async def _handshake(
    url: str, opening: AbstractAsyncContextManager[trio_websocket.WebSocketConnection], connect_timeout: float
) -> AsyncIterator[trio_websocket.WebSocketConnection]:
    """trio-websocket's connection, its handshake failures as this client's typed errors.

    Leaving closes the connection (close handshake bounded by trio-websocket);
    a close handshake that times out is no error: the connection is gone either way.
    """
    entered = False
    try:
        async with opening as websocket:
            entered = True
            yield websocket
    except trio_websocket.ConnectionRejected as rejected:
        if entered:
            raise
        body = (rejected.body or b"").decode("utf-8", "replace")
        raise WebSocketRejectedError(
            f"{url} refused the WebSocket upgrade: {rejected.status_code}" + (f" {_detail(body)}" if body else ""),
            status_code=rejected.status_code,
        ) from None
    except trio_websocket.ConnectionTimeout:
        if entered:
            raise
        raise ConnectError(f"no WebSocket handshake with {url} within {connect_timeout:g} s") from None
    except trio_websocket.DisconnectionTimeout:
        if not entered:
            raise
    except trio_websocket.HandshakeError as error:
        if entered:
            raise
        raise ConnectError(f"cannot connect to {url}: {_describe(error.__cause__ or error)}") from error
    except OSError as error:
        if entered:
            raise
        raise ConnectError(f"cannot connect to {url}: {_describe(error)}") from error
