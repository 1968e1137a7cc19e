"""An in-process ASGI client that streams: an app tested without sockets.

``httpx.ASGITransport`` buffers whole response bodies, which is useless for an
endless event stream, so this client speaks ASGI over Trio memory channels
directly.  Everything runs on the caller's clock: under pytest-trio's
``autojump_clock`` timed behaviour (keepalives, idle timeouts) is instant and
deterministic.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import orjson
import trio

from .._sse import ServerSentEvent, SSEDecoder

__all__ = [
    "DEFAULT_HEADERS",
    "ASGIResponse",
    "ASGITestClient",
    "EventStream",
    "Headers",
    "SSETestSession",
    "make_scope",
    "run_asgi_app",
]

Headers = Sequence[tuple[str, str]]
DEFAULT_HEADERS: Headers = (("host", "127.0.0.1:8000"),)

# Every wait on the app is bounded: a test expecting an answer that never comes fails.
_WAIT_SECONDS = 10.0


def make_scope(
    method: str,
    path: str,
    *,
    query: str = "",
    headers: Headers = DEFAULT_HEADERS,
    root_path: str = "",
    server: tuple[str, int] = ("127.0.0.1", 8000),
) -> dict[str, Any]:
    """An ASGI ``http`` scope as an HTTP/1.1 server would build it for this request."""
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": root_path + path,
        "raw_path": (root_path + path).encode(),
        "root_path": root_path,
        "query_string": query.encode(),
        "headers": [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers],
        "client": ("127.0.0.1", 50000),
        "server": server,
        "state": {},
        "extensions": {},
    }


@dataclass
class ASGIResponse:
    """A complete response: status, headers (lower-cased names), body.

    ``starts`` counts the ``http.response.start`` messages the app sent; anything
    but 1 is an ASGI violation a test may want to catch.
    """

    status: int
    headers: dict[str, str]
    body: bytes
    starts: int = 1

    @property
    def text(self) -> str:
        return self.body.decode()


@dataclass
class EventStream:
    """A streaming response (an SSE stream, usually) as the test reads it.

    Body chunks are decoded as server-sent events as they arrive; ``raw`` keeps
    every byte, for assertions on framing.
    """

    status: int
    headers: dict[str, str]
    _chunks: trio.MemoryReceiveChannel[bytes | None]
    _receive_send: trio.MemorySendChannel[dict[str, Any]]
    decoder: SSEDecoder = field(default_factory=SSEDecoder)
    raw: bytearray = field(default_factory=bytearray)
    _pending: list[ServerSentEvent] = field(default_factory=list)
    ended: bool = False

    async def read_chunk(self) -> bytes | None:
        """The next body chunk, or None once the app ended the body (or returned)."""
        if self.ended:
            return None
        try:
            chunk = await self._chunks.receive()
        except trio.EndOfChannel:
            chunk = None
        if chunk is None:
            self.ended = True
            return None
        self.raw += chunk
        self._pending.extend(self.decoder.feed(chunk))
        return chunk

    async def next_event(self) -> ServerSentEvent:
        """The next event (comments are not events); ``EOFError`` if the body ended first."""
        while not self._pending:
            if await self.read_chunk() is None:
                raise EOFError("stream ended")
        return self._pending.pop(0)

    async def read_until_end(self) -> None:
        """Read until the app ends the body."""
        while await self.read_chunk() is not None:
            pass

    def disconnect(self) -> None:
        """The client goes away: the app hears ``http.disconnect``.

        Like a real server, whatever the app still writes is dropped, even a
        write that was blocked on a client that had stopped reading.
        """
        self._receive_send.send_nowait({"type": "http.disconnect"})
        self._chunks.close()

    async def endpoint(self) -> str:
        """Read the first event, which must be ``endpoint``; return its URI."""
        event = await self.next_event()
        if event.event != "endpoint":
            raise AssertionError(f"expected the endpoint event, got {event!r}")
        return event.data

    async def next_message(self) -> dict[str, Any]:
        """The next ``event: message``, decoded as JSON."""
        event = await self.next_event()
        if event.event != "message":
            raise AssertionError(f"expected a message event, got {event!r}")
        message: dict[str, Any] = orjson.loads(event.data)
        return message


class ASGITestClient:
    """Drives one ASGI app in memory: plain requests and event streams.

    Get one from :func:`run_asgi_app`, which also runs the app's lifespan.
    ``strict`` makes a second ``http.response.start`` on a stream an error (the
    ASGI spec forbids it); some frameworks send one after the client left.
    """

    def __init__(self, app: Any, nursery: trio.Nursery, *, strict: bool = True) -> None:
        self.app = app
        self.strict = strict
        self._nursery = nursery

    async def request(
        self,
        method: str,
        path: str,
        *,
        query: str = "",
        headers: Headers = DEFAULT_HEADERS,
        body: bytes | Sequence[bytes] = b"",
        root_path: str = "",
        server: tuple[str, int] = ("127.0.0.1", 8000),
    ) -> ASGIResponse:
        """Send one request and return the whole response once the app returns.

        A sequence of ``body`` parts arrives as that many ``http.request`` messages.
        """
        scope = make_scope(
            method, path, query=query, headers=headers, root_path=root_path, server=server
        )
        chunks = [body] if isinstance(body, bytes) else list(body)
        inbox_send, inbox = trio.open_memory_channel[dict[str, Any]](math.inf)
        for index, chunk in enumerate(chunks):
            inbox_send.send_nowait(
                {"type": "http.request", "body": chunk, "more_body": index < len(chunks) - 1}
            )
        sent: list[dict[str, Any]] = []

        async def send(message: Mapping[str, Any]) -> None:
            sent.append(dict(message))

        await self.app(scope, inbox.receive, send)
        starts = [m for m in sent if m["type"] == "http.response.start"]
        if not starts:
            raise AssertionError("the app sent no response")
        body_out = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
        headers_out = {k.decode().lower(): v.decode() for k, v in starts[0].get("headers", [])}
        return ASGIResponse(starts[0]["status"], headers_out, body_out, starts=len(starts))

    @asynccontextmanager
    async def stream(
        self,
        path: str = "/sse",
        *,
        method: str = "GET",
        query: str = "",
        headers: Headers = DEFAULT_HEADERS,
        root_path: str = "",
        server: tuple[str, int] = ("127.0.0.1", 8000),
        buffer: float = math.inf,
        body: bytes = b"",
    ) -> AsyncIterator[EventStream]:
        """Open a streaming request; on exit the client disconnects and the app must return.

        ``buffer`` is how many body chunks the "network" holds before the app's
        ``send`` blocks: 0 models a client that reads nothing until asked.
        ``body`` is the request body (a POST answered with an event stream).
        """
        scope = make_scope(
            method, path, query=query, headers=headers, root_path=root_path, server=server
        )
        inbox_send, inbox = trio.open_memory_channel[dict[str, Any]](math.inf)
        inbox_send.send_nowait({"type": "http.request", "body": body, "more_body": False})
        chunk_send, chunk_receive = trio.open_memory_channel[bytes | None](buffer)
        start: list[dict[str, Any]] = []
        started = trio.Event()
        done = trio.Event()

        async def send(message: Mapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                if start:
                    if self.strict:
                        raise AssertionError("second http.response.start")
                    return
                start.append(dict(message))
                started.set()
                return
            if not started.is_set():
                raise AssertionError("body before http.response.start")
            try:
                await chunk_send.send(message.get("body", b""))
                if not message.get("more_body", False):
                    await chunk_send.send(None)
            except trio.BrokenResourceError:
                pass  # the client is gone

        async def run_app() -> None:
            try:
                await self.app(scope, inbox.receive, send)
            finally:
                chunk_send.close()  # an app that returns ends the body, as a server would
                done.set()
                started.set()

        self._nursery.start_soon(run_app)
        try:
            # A client cancelled before the response started (a JSON answer not ready
            # yet) leaves all the same: the app hears the disconnect.
            await started.wait()
            if not start:
                raise AssertionError("the app returned without a response")
            headers_out = {k.decode().lower(): v.decode() for k, v in start[0].get("headers", [])}
            stream = EventStream(start[0]["status"], headers_out, chunk_receive, inbox_send)
            yield stream
        finally:
            if not done.is_set():
                inbox_send.send_nowait({"type": "http.disconnect"})
                chunk_receive.close()
            with trio.CancelScope(shield=True), trio.fail_after(_WAIT_SECONDS):
                await done.wait()

    @asynccontextmanager
    async def open_sse_session(
        self, path: str = "/sse", *, headers: Headers = DEFAULT_HEADERS
    ) -> AsyncIterator[SSETestSession]:
        """Open an HTTP+SSE session: the event stream, its endpoint read, ready to POST."""
        async with self.stream(path, headers=headers) as stream:
            if stream.status != 200:
                raise AssertionError(f"GET {path} answered {stream.status}")
            endpoint = await stream.endpoint()
            yield SSETestSession(self, stream, endpoint, headers)


class SSETestSession:
    """One HTTP+SSE session: POST JSON-RPC messages, read what comes down the stream."""

    def __init__(
        self, client: ASGITestClient, stream: EventStream, endpoint: str, headers: Headers
    ) -> None:
        self.client = client
        self.stream = stream
        self.endpoint = endpoint
        self._headers: Headers = (*headers, ("content-type", "application/json"))
        self._last_id = 0

    async def post(self, message: Mapping[str, Any]) -> ASGIResponse:
        """POST one JSON-RPC message to the endpoint; the transport answers 202 when it took it."""
        path, _, query = self.endpoint.partition("?")
        return await self.client.request(
            "POST", path, query=query, headers=self._headers, body=orjson.dumps(message)
        )

    async def next_message(self) -> dict[str, Any]:
        """The next message the server sent down the stream (bounded wait)."""
        with trio.fail_after(_WAIT_SECONDS):
            return await self.stream.next_message()

    async def request(self, method: str, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Send a request and return its response (result or error); other messages are skipped."""
        self._last_id += 1
        request_id = self._last_id
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
        if params is not None:
            message["params"] = dict(params)
        response = await self.post(message)
        if response.status != 202:
            raise AssertionError(f"POST answered {response.status}: {response.text}")
        while True:
            answer = await self.next_message()
            if answer.get("id") == request_id and "method" not in answer:
                return answer

    async def notify(self, method: str, params: Mapping[str, Any] | None = None) -> None:
        """Send a notification."""
        message: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            message["params"] = dict(params)
        response = await self.post(message)
        if response.status != 202:
            raise AssertionError(f"POST answered {response.status}: {response.text}")

    async def initialize(
        self,
        *,
        version: str = "2025-11-25",
        capabilities: Mapping[str, Any] | None = None,
        client_info: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """The MCP handshake: ``initialize``, then ``notifications/initialized``; returns the result."""
        response = await self.request(
            "initialize",
            {
                "protocolVersion": version,
                "capabilities": dict(capabilities or {}),
                "clientInfo": dict(client_info or {"name": "test-client", "version": "1.0"}),
            },
        )
        if "result" not in response:
            raise AssertionError(f"initialize failed: {response!r}")
        await self.notify("notifications/initialized")
        result: dict[str, Any] = response["result"]
        return result


@asynccontextmanager
async def run_asgi_app(app: Any, *, strict: bool = True) -> AsyncIterator[ASGITestClient]:
    """Run ``app``'s lifespan around the block, as an ASGI server would, and drive it in memory.

    Startup must complete within 10 s; on exit the app gets ``lifespan.shutdown``
    and must complete it within 10 s.  ``strict``: see :class:`ASGITestClient`.
    """
    async with trio.open_nursery() as nursery:
        to_app_send, to_app = trio.open_memory_channel[dict[str, Any]](math.inf)
        from_app_send, from_app = trio.open_memory_channel[dict[str, Any]](math.inf)

        async def send(message: Mapping[str, Any]) -> None:
            await from_app_send.send(dict(message))

        lifespan_scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
        nursery.start_soon(app, lifespan_scope, to_app.receive, send)
        await to_app_send.send({"type": "lifespan.startup"})
        with trio.fail_after(_WAIT_SECONDS):
            reply = await from_app.receive()
        if reply["type"] != "lifespan.startup.complete":
            raise AssertionError(f"lifespan startup failed: {reply!r}")
        yield ASGITestClient(app, nursery, strict=strict)
        # Only after a block that ended normally: one that failed (or a crashed
        # request task) has cancelled the nursery, the lifespan task included.
        with trio.fail_after(_WAIT_SECONDS):
            await to_app_send.send({"type": "lifespan.shutdown"})
            reply = await from_app.receive()
            if reply["type"] != "lifespan.shutdown.complete":
                raise AssertionError(f"lifespan shutdown failed: {reply!r}")
