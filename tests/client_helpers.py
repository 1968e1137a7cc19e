"""Test servers for the client: in memory (for the mock clock) and on real loopback sockets.

* :func:`asgi_http_client` -- the in-memory ``httpx.AsyncClient`` of
  :mod:`trio_mcp_sse.testing`, its transport exposed for ``kill()`` and the
  recorded requests.  No sockets, so ``autojump_clock`` makes timeouts instant.
* :class:`FakeServer` -- a raw HTTP+SSE server whose every answer a test
  scripts: what the GET answers, which events go down the stream, what each
  POST gets back.  For the failures real servers do not produce on demand.
* :func:`serve_in_process` -- hypercorn on 127.0.0.1:0 in the test's nursery.
"""

from __future__ import annotations

import math
import os
import re
import select
import socket
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import orjson
import trio

from trio_mcp_sse._sse import encode_comment, encode_event
from trio_mcp_sse.client._util import raise_collapsed
from trio_mcp_sse.testing import open_http_transport

BASE_URL = "http://testserver"
SSE_URL = f"{BASE_URL}/sse"

ASGIApp = Callable[[dict[str, Any], Any, Any], Awaitable[None]]


@asynccontextmanager
async def asgi_http_client(
    app: ASGIApp, *, lifespan: bool = True
) -> AsyncIterator[httpx.AsyncClient]:
    """The public in-memory client, with its transport reachable as ``transport_under_test``
    (for ``kill()`` and the recorded ``requests``)."""
    async with (
        open_http_transport(app, lifespan=lifespan) as transport,
        httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client,
    ):
        client.transport_under_test = transport  # type: ignore[attr-defined]
        yield client


# -- a server whose every answer the test decides -----------------------------------------------
class FakeServer:
    """A raw ASGI HTTP+SSE server under the test's control.

    ``get_status`` / ``content_type`` shape the GET answer; ``endpoint`` is the
    data of the endpoint event (``None``: never sent); ``prelude`` goes out
    before it.  ``await push(message)`` sends an ``event: message``;
    ``await push_raw(bytes)`` sends anything; ``end_stream()`` finishes the
    body cleanly.  Each POST is recorded in ``posted`` (parsed JSON) and
    answered ``post_status``; ``on_post`` may reply on the stream.
    """

    def __init__(
        self,
        *,
        endpoint: str | None = "/messages/?session_id=abc123",
        get_status: int = 200,
        content_type: str = "text/event-stream",
        get_body: bytes = b"",
        prelude: bytes = b"",
        post_status: int | Callable[[dict[str, Any]], int] = 202,
        on_post: Callable[[FakeServer, dict[str, Any]], Awaitable[None]] | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.get_status = get_status
        self.content_type = content_type
        self.get_body = get_body
        self.prelude = prelude
        self.post_status = post_status
        self.on_post = on_post
        self.posted: list[dict[str, Any]] = []
        self.get_headers: dict[str, str] = {}
        self.post_headers: list[dict[str, str]] = []
        self.post_received = trio.Event()
        self.stream_open = trio.Event()
        self.stream_closed = trio.Event()
        self._frames_send, self._frames = trio.open_memory_channel[bytes | None](math.inf)

    async def push(self, message: dict[str, Any]) -> None:
        await self._frames_send.send(encode_event(orjson.dumps(message), event="message"))

    async def push_raw(self, frame: bytes) -> None:
        await self._frames_send.send(frame)

    def end_stream(self) -> None:
        self._frames_send.send_nowait(None)

    async def wait_for_post(self, predicate: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        """The first POSTed message matching ``predicate`` (waits for it)."""
        while True:
            for message in self.posted:
                if predicate(message):
                    return message
            self.post_received = trio.Event()
            await self.post_received.wait()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        headers = {
            key.decode("latin-1"): value.decode("latin-1") for key, value in scope["headers"]
        }
        if scope["method"] == "GET":
            self.get_headers = headers
            await self._stream(receive, send)
        else:
            body = b""
            while True:
                message = await receive()
                body += message.get("body", b"")
                if not message.get("more_body"):
                    break
            parsed = orjson.loads(body)
            self.posted.append(parsed)
            self.post_headers.append(headers)
            self.post_received.set()
            status = self.post_status(parsed) if callable(self.post_status) else self.post_status
            text = b"Accepted" if status == 202 else b"Internal Server Error: boom"
            await send(
                {
                    "type": "http.response.start",
                    "status": status,
                    "headers": [(b"content-type", b"text/plain")],
                }
            )
            await send({"type": "http.response.body", "body": text})
            if status < 300 and self.on_post is not None:
                await self.on_post(self, parsed)

    async def _stream(self, receive: Any, send: Any) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": self.get_status,
                "headers": [(b"content-type", self.content_type.encode())],
            }
        )
        if self.get_status != 200 or self.content_type != "text/event-stream":
            await send({"type": "http.response.body", "body": self.get_body})
            return
        first = self.prelude
        if self.endpoint is not None:
            first += encode_event(self.endpoint, event="endpoint")
        await send({"type": "http.response.body", "body": first, "more_body": True})
        self.stream_open.set()
        try:
            async with trio.open_nursery() as nursery:

                async def watch_disconnect() -> None:
                    while (await receive())["type"] != "http.disconnect":
                        pass
                    nursery.cancel_scope.cancel()

                nursery.start_soon(watch_disconnect)
                async for frame in self._frames:
                    if frame is None:
                        await send({"type": "http.response.body", "body": b"", "more_body": False})
                        break
                    await send({"type": "http.response.body", "body": frame, "more_body": True})
                nursery.cancel_scope.cancel()
        finally:
            self.stream_closed.set()


async def answer_initialize(server: FakeServer, message: dict[str, Any], **overrides: Any) -> bool:
    """Reply to ``initialize`` like a minimal server; report whether ``message`` was one."""
    if message.get("method") != "initialize":
        return False
    result = {
        "protocolVersion": message["params"]["protocolVersion"],
        "capabilities": {"tools": {}},
        "serverInfo": {"name": "fake", "version": "0"},
        **overrides,
    }
    await server.push({"jsonrpc": "2.0", "id": message["id"], "result": result})
    return True


def keepalive() -> bytes:
    return encode_comment("ping")


# -- real sockets ---------------------------------------------------------------------------------
@asynccontextmanager
async def serve_in_process(app: ASGIApp) -> AsyncIterator[str]:
    """Serve ``app`` with hypercorn on 127.0.0.1:0 in this task's nursery; yield its base URL."""
    from hypercorn.config import Config
    from hypercorn.trio import serve

    config = Config()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None
    config.errorlog = None
    config.graceful_timeout = 1.0
    shutdown = trio.Event()
    try:
        async with trio.open_nursery() as nursery:
            binds = await nursery.start(_serve_task, serve, app, config, shutdown)
            try:
                yield str(binds[0])
            finally:
                # Graceful shutdown first; whatever is left after 3 s is cancelled.
                shutdown.set()
                nursery.cancel_scope.deadline = trio.current_time() + 3
    except BaseExceptionGroup as group:
        raise_collapsed(group)


async def _serve_task(
    serve: Any, app: ASGIApp, config: Any, shutdown: trio.Event, task_status: trio.TaskStatus[Any]
) -> None:
    await serve(app, config, shutdown_trigger=shutdown.wait, task_status=task_status)


def free_port() -> int:
    """A loopback port with nothing listening (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- the official SDK server in a subprocess ------------------------------------------------------
ROOT = Path(__file__).resolve().parent.parent


def start_sdk_server(mode: str = "sse") -> tuple[Any, str]:
    """Start tests/client_helpers_sdk_server.py (``mode``: sse, streamable, streamable-json).

    Returns (process, base URL); the caller must stop it.
    """
    log = tempfile.TemporaryFile()  # noqa: SIM115 -- lives as long as the process; closed by stop_process
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.client_helpers_sdk_server", mode],
        cwd=str(ROOT),
        env=env,
        stdout=subprocess.PIPE,
        stderr=log,
    )
    process.log_file = log  # type: ignore[attr-defined]
    try:
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], 30)
        line = process.stdout.readline() if ready else b""
        match = re.match(rb"PORT (\d+)", line)
        if match is None:
            log.seek(0)
            raise RuntimeError(
                f"the SDK server did not start: {line!r}\n{log.read().decode(errors='replace')}"
            )
        return process, f"http://127.0.0.1:{int(match.group(1))}"
    except BaseException:
        stop_process(process)
        raise


def stop_process(process: Any) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    if process.stdout is not None:
        process.stdout.close()
    log = getattr(process, "log_file", None)
    if log is not None:
        log.close()
