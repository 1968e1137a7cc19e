"""An ``httpx`` transport that runs an ASGI app in memory and streams its responses.

For testing code that speaks HTTP -- the Trio client, above all -- against an
app without sockets: ``connect_sse(url, http_client=client)`` with a client
from :func:`open_http_client`.  ``httpx.ASGITransport`` buffers whole bodies,
which never completes for an endless event stream; this one hands each
``http.response.body`` message to httpx as it is sent.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import unquote

import httpx
import trio

from ..client._util import raise_collapsed

__all__ = ["InMemoryHTTPTransport", "open_http_client", "open_http_transport"]

ASGIApp = Callable[[dict[str, Any], Any, Any], Awaitable[None]]

_STARTUP_TIMEOUT = 10.0


class _Crash:
    def __init__(self, error: BaseException) -> None:
        self.error = error


class _AppBody(httpx.AsyncByteStream):
    """The app's ``http.response.body`` messages, as httpx reads a body."""

    def __init__(self, messages: trio.MemoryReceiveChannel[Any], disconnect: trio.Event) -> None:
        self._messages = messages
        self._disconnect = disconnect

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for message in self._messages:
            if isinstance(message, _Crash):
                raise httpx.RemoteProtocolError(f"server error mid-body: {message.error!r}")
            if message["type"] == "http.response.body":
                body: bytes = message.get("body", b"")
                if body:
                    yield body
                if not message.get("more_body", False):
                    return
        raise httpx.RemoteProtocolError("peer closed connection without sending complete message body")

    async def aclose(self) -> None:
        self._disconnect.set()


class InMemoryHTTPTransport(httpx.AsyncBaseTransport):
    """Runs ``app`` once per request, as a task of ``nursery``.

    ``requests`` records every request sent, for assertions on headers and
    bodies.  ``kill()`` plays the server process dying: running requests are
    cancelled (their streams break) and new ones are refused with
    ``httpx.ConnectError``.  An app that raises before responding gives
    ``httpx.RemoteProtocolError``, as a real server's reset would.
    """

    def __init__(self, app: ASGIApp, nursery: trio.Nursery) -> None:
        self.app = app
        self._nursery = nursery
        self.dead = False
        self.requests: list[httpx.Request] = []
        self._running: set[trio.CancelScope] = set()

    def kill(self) -> None:
        """The server dies: cancel every running request and refuse new ones."""
        self.dead = True
        for scope in self._running:
            scope.cancel()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self.dead:
            raise httpx.ConnectError("connection refused (server is dead)", request=request)
        self.requests.append(request)
        body = await request.aread()
        url = request.url
        scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "method": request.method,
            "scheme": url.scheme,
            "path": unquote(url.path),
            "raw_path": url.raw_path.split(b"?")[0],
            "root_path": "",
            "query_string": url.query,
            "headers": [(key.lower(), value) for key, value in request.headers.raw],
            "client": ("127.0.0.1", 50000),
            "server": (url.host, url.port or 80),
            "state": {},
            "extensions": {},
        }
        to_client, from_app = trio.open_memory_channel[Any](math.inf)
        disconnect = trio.Event()
        body_delivered = False

        async def receive() -> dict[str, Any]:
            nonlocal body_delivered
            if not body_delivered:
                body_delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            await disconnect.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            if not disconnect.is_set():
                to_client.send_nowait(message)

        async def run_app() -> None:
            with to_client, trio.CancelScope() as running:
                self._running.add(running)
                try:
                    await self.app(scope, receive, send)
                except Exception as error:
                    to_client.send_nowait(_Crash(error))
                finally:
                    self._running.discard(running)

        self._nursery.start_soon(run_app)
        try:
            start = await from_app.receive()
        except trio.EndOfChannel:
            raise httpx.RemoteProtocolError("server closed the connection without a response") from None
        if isinstance(start, _Crash) or start["type"] != "http.response.start":
            raise httpx.RemoteProtocolError(f"server failed before responding: {start!r}")
        headers = [(bytes(key), bytes(value)) for key, value in start.get("headers", [])]
        return httpx.Response(start["status"], headers=headers, stream=_AppBody(from_app, disconnect), request=request)


@asynccontextmanager
async def open_http_transport(app: ASGIApp, *, lifespan: bool = True) -> AsyncIterator[InMemoryHTTPTransport]:
    """The transport, with the app's lifespan run around it when ``lifespan`` (startup bounded: 10 s).

    Requests still running when the block ends are cancelled.
    """
    try:
        async with _running(app, lifespan=lifespan) as transport:
            yield transport
    except BaseExceptionGroup as group:
        raise_collapsed(group)


@asynccontextmanager
async def _running(app: ASGIApp, *, lifespan: bool) -> AsyncIterator[InMemoryHTTPTransport]:
    async with trio.open_nursery() as nursery:
        transport = InMemoryHTTPTransport(app, nursery)
        shutdown = trio.Event()
        if lifespan:
            started = trio.Event()

            async def run_lifespan() -> None:
                sent_startup = False

                async def receive() -> dict[str, Any]:
                    nonlocal sent_startup
                    if not sent_startup:
                        sent_startup = True
                        return {"type": "lifespan.startup"}
                    await shutdown.wait()
                    return {"type": "lifespan.shutdown"}

                async def send(message: dict[str, Any]) -> None:
                    if message["type"].startswith("lifespan.startup"):
                        started.set()

                await app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, receive, send)

            nursery.start_soon(run_lifespan)
            with trio.fail_after(_STARTUP_TIMEOUT):
                await started.wait()
        try:
            yield transport
        finally:
            shutdown.set()
            nursery.cancel_scope.cancel()


@asynccontextmanager
async def open_http_client(
    app: ASGIApp, *, lifespan: bool = True, base_url: str = "http://testserver"
) -> AsyncIterator[httpx.AsyncClient]:
    """An ``httpx.AsyncClient`` whose requests ``app`` serves in memory.

    Pass it as ``http_client=`` to :func:`~trio_mcp_sse.client.connect_sse` or
    :func:`~trio_mcp_sse.client.open_session` to test client code without sockets.
    """
    async with (
        open_http_transport(app, lifespan=lifespan) as transport,
        httpx.AsyncClient(transport=transport, base_url=base_url) as client,
    ):
        yield client
