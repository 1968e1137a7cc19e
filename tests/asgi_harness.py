"""An in-process ASGI client that streams: the transport tested without sockets.

``httpx.ASGITransport`` buffers whole bodies, which is useless for an endless
event stream, so this harness speaks ASGI over Trio memory channels directly.
Everything runs on the test's clock, so ``autojump_clock`` makes timed behaviour
(keepalives, timeouts) deterministic.
"""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import trio

from trio_mcp_sse._sse import ServerSentEvent, SSEDecoder

Headers = Sequence[tuple[str, str]]
DEFAULT_HEADERS: Headers = (("host", "127.0.0.1:8000"),)


def make_scope(
    method: str,
    path: str,
    *,
    query: str = "",
    headers: Headers = DEFAULT_HEADERS,
    root_path: str = "",
    server: tuple[str, int] = ("127.0.0.1", 8000),
) -> dict[str, Any]:
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
class Response:
    status: int
    headers: dict[str, str]
    body: bytes
    starts: int = 1

    @property
    def text(self) -> str:
        return self.body.decode()


@dataclass
class Stream:
    """A streaming response being read by the test."""

    status: int
    headers: dict[str, str]
    _chunks: trio.MemoryReceiveChannel[bytes | None]
    _receive_send: trio.MemorySendChannel[dict[str, Any]]
    decoder: SSEDecoder = field(default_factory=SSEDecoder)
    raw: bytearray = field(default_factory=bytearray)
    _pending: list[ServerSentEvent] = field(default_factory=list)
    ended: bool = False

    async def read_chunk(self) -> bytes | None:
        """The next body chunk, or None once the server ended the body."""
        if self.ended:
            return None
        chunk = await self._chunks.receive()
        if chunk is None:
            self.ended = True
            return None
        self.raw += chunk
        self._pending.extend(self.decoder.feed(chunk))
        return chunk

    async def next_event(self) -> ServerSentEvent:
        while not self._pending:
            if await self.read_chunk() is None:
                raise EOFError("stream ended")
        return self._pending.pop(0)

    async def read_until_end(self) -> None:
        while await self.read_chunk() is not None:
            pass

    def disconnect(self) -> None:
        """The client goes away: the app hears ``http.disconnect``, and like a real
        server the harness drops whatever the app still writes (even a write that
        was blocked on a client that had stopped reading)."""
        self._receive_send.send_nowait({"type": "http.disconnect"})
        self._chunks.close()

    async def endpoint(self) -> str:
        """Read the first event, which must be ``endpoint``; return its URI."""
        event = await self.next_event()
        assert event.event == "endpoint", event
        return event.data

    async def next_message(self) -> dict[str, Any]:
        """The next ``event: message``, decoded as JSON."""
        event = await self.next_event()
        assert event.event == "message", event
        return dict(json.loads(event.data))


class Harness:
    """Drives one ASGI app: lifespan, plain requests and event streams."""

    def __init__(self, app: Any, nursery: trio.Nursery) -> None:
        self.app = app
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
    ) -> Response:
        scope = make_scope(method, path, query=query, headers=headers, root_path=root_path, server=server)
        chunks = [body] if isinstance(body, bytes) else list(body)
        inbox_send, inbox = trio.open_memory_channel[dict[str, Any]](math.inf)
        for index, chunk in enumerate(chunks):
            inbox_send.send_nowait({"type": "http.request", "body": chunk, "more_body": index < len(chunks) - 1})
        sent: list[dict[str, Any]] = []

        async def send(message: Any) -> None:
            sent.append(dict(message))

        await self.app(scope, inbox.receive, send)
        starts = [m for m in sent if m["type"] == "http.response.start"]
        assert starts, "app sent no response"
        body_out = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
        headers_out = {k.decode().lower(): v.decode() for k, v in starts[0].get("headers", [])}
        return Response(starts[0]["status"], headers_out, body_out, starts=len(starts))

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
    ) -> AsyncIterator[Stream]:
        """Open a streaming request; on exit the client disconnects and the app must return.

        ``buffer`` is how many body chunks the "network" holds before the app's
        ``send`` blocks: 0 models a client that reads nothing until asked.
        """
        scope = make_scope(method, path, query=query, headers=headers, root_path=root_path, server=server)
        inbox_send, inbox = trio.open_memory_channel[dict[str, Any]](math.inf)
        inbox_send.send_nowait({"type": "http.request", "body": b"", "more_body": False})
        chunk_send, chunk_receive = trio.open_memory_channel[bytes | None](buffer)
        start: list[dict[str, Any]] = []
        started = trio.Event()
        starts = 0

        async def send(message: Any) -> None:
            nonlocal starts
            if message["type"] == "http.response.start":
                starts += 1
                assert starts == 1, "second http.response.start"
                start.append(dict(message))
                started.set()
                return
            assert started.is_set(), "body before response start"
            try:
                await chunk_send.send(message.get("body", b""))
                if not message.get("more_body", False):
                    await chunk_send.send(None)
            except trio.BrokenResourceError:
                pass  # the client is gone

        done = trio.Event()

        async def run_app() -> None:
            try:
                await self.app(scope, inbox.receive, send)
            finally:
                done.set()
                started.set()

        self._nursery.start_soon(run_app)
        await started.wait()
        assert start, "app returned without a response"
        headers_out = {k.decode().lower(): v.decode() for k, v in start[0].get("headers", [])}
        stream = Stream(start[0]["status"], headers_out, chunk_receive, inbox_send)
        try:
            yield stream
        finally:
            if not done.is_set():
                stream.disconnect()
            with trio.fail_after(10):
                await done.wait()


@asynccontextmanager
async def serve(app: Any) -> AsyncIterator[Harness]:
    """Run ``app``'s lifespan around the block, like an ASGI server would."""
    async with trio.open_nursery() as nursery:
        to_app_send, to_app = trio.open_memory_channel[dict[str, Any]](math.inf)
        from_app_send, from_app = trio.open_memory_channel[dict[str, Any]](math.inf)

        async def send(message: Any) -> None:
            await from_app_send.send(dict(message))

        nursery.start_soon(app, {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, to_app.receive, send)
        await to_app_send.send({"type": "lifespan.startup"})
        assert (await from_app.receive())["type"] == "lifespan.startup.complete"
        try:
            yield Harness(app, nursery)
        finally:
            with trio.CancelScope(shield=True), trio.fail_after(10):
                await to_app_send.send({"type": "lifespan.shutdown"})
                assert (await from_app.receive())["type"] == "lifespan.shutdown.complete"
