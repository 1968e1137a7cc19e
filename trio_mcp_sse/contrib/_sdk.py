"""Serve a server written with the official ``mcp`` SDK over this transport.

Theory of operation
-------------------
The SDK's low-level ``Server.run(read_stream, write_stream, options)`` serves
one connection over a pair of *anyio* memory object streams of
``SessionMessage``.  Our session speaks *trio* memory channels.  The two look
alike but do not mix: their exceptions are different classes (the SDK catches
``anyio.BrokenResourceError``; a raw trio channel would raise
``trio.BrokenResourceError`` straight through it), and the SDK reads the end
of its read stream as "connection over".

So each session gets two anyio streams and two small pump tasks in a nursery
inside the session's task:

* *feed*: ``session.incoming`` -> SDK read stream.  Each message is wrapped in
  a ``SessionMessage`` whose metadata carries the HTTP headers of the POST
  that brought it (the SDK's ``ctx.headers`` reads them).  When the session's
  inbound channel ends, the read stream is closed, the SDK sees end-of-stream
  and ``Server.run`` returns normally.
* *drain*: SDK write stream -> ``session.send`` (JSON bytes).  When the
  session can no longer take messages, the receiving end is closed, so the
  SDK's next write fails with the anyio exception it expects and handles.

A client that disconnects cancels the session's scope: ``Server.run`` and
both pumps are cancelled together, which is a normal Trio unwind -- no
exception escapes and nothing is logged as a failure.  If ``Server.run``
returns on its own, the feed is cancelled and the drain finishes forwarding
what the SDK wrote before closing its stream.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

try:
    import anyio
    from mcp.server.lowlevel.server import Server
    from mcp.server.models import InitializationOptions
    from mcp.shared.message import ServerMessageMetadata, SessionMessage
except ImportError as missing:  # pragma: no cover - depends on the environment
    raise ImportError(
        "trio_mcp_sse.contrib needs the official MCP SDK: pip install 'trio-mcp-sse[sdk]'"
    ) from missing

import trio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from .._jsonrpc import encode_message
from .._session import Session, SessionClosed, SessionHandler

if TYPE_CHECKING:
    from quart_trio import QuartTrio

    from .._transport import SseServerTransport

__all__ = ["SdkRequest", "SdkSessionHandler", "lowlevel_server", "sdk_sse_app", "sdk_sse_transport"]


@dataclass(frozen=True, slots=True)
class SdkRequest:
    """What SDK handlers see as ``ctx.request_context.request`` for each message.

    ``headers`` are those of the HTTP request that carried the message
    (names lower-case), which is what the SDK's ``Context.headers`` returns.
    """

    headers: Mapping[str, str]
    session_id: str
    principal: str | None


def lowlevel_server(server: Any) -> Server[Any]:
    """The low-level ``mcp.server.lowlevel.Server`` behind ``server``.

    Accepts a low-level ``Server`` as it is, or the SDK's high-level
    ``MCPServer``, which keeps its low-level server in ``_lowlevel_server``
    (the SDK's own transports read it there too).
    """
    if isinstance(server, Server):
        return server
    inner = getattr(server, "_lowlevel_server", None)
    if isinstance(inner, Server):
        return inner
    raise TypeError(
        f"expected an mcp.server.lowlevel.Server or mcp.server.mcpserver.MCPServer, not {type(server).__name__}"
    )


class SdkSessionHandler:
    """A :data:`SessionHandler` that runs an SDK server for each session.

    ``initialization_options`` default to the server's
    ``create_initialization_options()``.  ``raise_exceptions`` is passed to
    ``Server.run``: when true, a failing SDK handler ends the session (the
    session manager logs it) instead of becoming an error response.
    """

    def __init__(
        self,
        server: Any,
        *,
        initialization_options: InitializationOptions | None = None,
        raise_exceptions: bool = False,
    ) -> None:
        self.server = lowlevel_server(server)
        self.initialization_options = initialization_options
        self.raise_exceptions = raise_exceptions

    async def __call__(self, session: Session) -> None:
        options = self.initialization_options or self.server.create_initialization_options()
        read_send, read_receive = anyio.create_memory_object_stream[SessionMessage | Exception](0)
        write_send, write_receive = anyio.create_memory_object_stream[SessionMessage](0)
        async with trio.open_nursery() as nursery:
            feed_scope = trio.CancelScope()
            nursery.start_soon(_feed, session, read_send, feed_scope)
            nursery.start_soon(_drain, session, write_receive)
            try:
                await self.server.run(read_receive, write_send, options, raise_exceptions=self.raise_exceptions)
            finally:
                # The SDK is done reading: nothing may wait for the next POST.
                feed_scope.cancel()
                read_receive.close()
                write_send.close()


async def _feed(
    session: Session, sdk_inbound: MemoryObjectSendStream[SessionMessage | Exception], scope: trio.CancelScope
) -> None:
    """Session inbound channel -> SDK read stream; closing it is the SDK's end-of-connection."""
    try:
        with scope:
            async for incoming in session.incoming:
                metadata = ServerMessageMetadata(
                    request_context=SdkRequest(incoming.headers, session.id, session.principal)
                )
                try:
                    await sdk_inbound.send(SessionMessage(incoming.message, metadata=metadata))
                except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                    return  # the SDK stopped reading
    finally:
        sdk_inbound.close()


async def _drain(session: Session, sdk_outbound: MemoryObjectReceiveStream[SessionMessage]) -> None:
    """SDK write stream -> session outbound channel, until the SDK closes its end."""
    try:
        async for item in sdk_outbound:
            try:
                await session.send(encode_message(item.message))
            except SessionClosed:
                return  # the SDK's next write gets anyio.BrokenResourceError, which it handles
    finally:
        sdk_outbound.close()


def sdk_sse_transport(
    server: Any,
    *,
    initialization_options: InitializationOptions | None = None,
    raise_exceptions: bool = False,
    **transport_options: Any,
) -> SseServerTransport:
    """An :class:`SseServerTransport` (itself an ASGI app) serving an SDK server.

    ``transport_options`` are the transport's (paths, keepalive, security,
    limits, registry).  Serve it with ``hypercorn --worker-class trio``.
    """
    from .._transport import SseServerTransport

    handler: SessionHandler = SdkSessionHandler(
        server, initialization_options=initialization_options, raise_exceptions=raise_exceptions
    )
    return SseServerTransport(handler, **transport_options)


def sdk_sse_app(
    server: Any,
    *,
    initialization_options: InitializationOptions | None = None,
    raise_exceptions: bool = False,
    **transport_options: Any,
) -> QuartTrio:
    """A Quart-Trio app serving an SDK server over HTTP+SSE (add your own routes to it)."""
    from quart_trio import QuartTrio

    lowlevel = lowlevel_server(server)
    app = QuartTrio(lowlevel.name)
    transport = sdk_sse_transport(
        lowlevel,
        initialization_options=initialization_options,
        raise_exceptions=raise_exceptions,
        **transport_options,
    )
    transport.init_app(app)
    app.extensions["trio_mcp_sse"] = transport
    return app
