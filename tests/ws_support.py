"""An in-memory ASGI WebSocket peer: drives an app's ``websocket`` scope as an ASGI server would."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import orjson
import trio

_WAIT = 10.0
LOOPBACK: tuple[tuple[str, str], ...] = (("host", "127.0.0.1:8000"),)


def websocket_scope(
    path: str = "/ws",
    *,
    subprotocols: Sequence[str] = ("mcp",),
    headers: Sequence[tuple[str, str]] = LOOPBACK,
    http_response: bool = True,
) -> dict[str, Any]:
    raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers]
    if subprotocols:
        raw.append((b"sec-websocket-protocol", ", ".join(subprotocols).encode("latin-1")))
    return {
        "type": "websocket",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "scheme": "ws",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": raw,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "subprotocols": list(subprotocols),
        "state": {},
        "extensions": {"websocket.http.response": {}} if http_response else {},
    }


class WebSocketPeer:
    """The client end of one in-memory WebSocket connection to an ASGI app."""

    def __init__(self, to_app: trio.MemorySendChannel[dict[str, Any]], from_app: trio.MemoryReceiveChannel[dict[str, Any]]) -> None:
        self._to_app = to_app
        self._from_app = from_app
        self.app_done = trio.Event()

    async def next(self) -> dict[str, Any]:
        """The next ASGI message the app sent (bounded wait)."""
        with trio.fail_after(_WAIT):
            return await self._from_app.receive()

    async def send_text(self, message: Any) -> None:
        text = message if isinstance(message, str) else orjson.dumps(message).decode()
        await self._to_app.send({"type": "websocket.receive", "text": text})

    async def send_bytes(self, data: bytes) -> None:
        await self._to_app.send({"type": "websocket.receive", "bytes": data})

    async def disconnect(self, code: int = 1000) -> None:
        await self._to_app.send({"type": "websocket.disconnect", "code": code})

    async def receive_json(self) -> dict[str, Any]:
        message = await self.next()
        assert message["type"] == "websocket.send", message
        loaded: dict[str, Any] = orjson.loads(message["text"])
        return loaded

    async def request(self, request_id: int, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        await self.send_text({"jsonrpc": "2.0", "id": request_id, "method": method, "params": params or {}})
        return await self.receive_json()

    async def initialize(self) -> dict[str, Any]:
        answer = await self.request(
            0,
            "initialize",
            {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
        )
        await self.send_text({"jsonrpc": "2.0", "method": "notifications/initialized"})
        return answer

    async def closed(self) -> tuple[int, str]:
        """Wait for the app's close frame; returns (code, reason)."""
        message = await self.next()
        assert message["type"] == "websocket.close", message
        return message["code"], message.get("reason", "")

    async def wait_app_done(self) -> None:
        with trio.fail_after(_WAIT):
            await self.app_done.wait()


@asynccontextmanager
async def websocket_peer(app: Any, scope: dict[str, Any] | None = None) -> AsyncIterator[tuple[WebSocketPeer, dict[str, Any]]]:
    """Start the app on a ``websocket`` scope; yields the peer and the app's first answer
    (``websocket.accept``, ``websocket.close`` or ``websocket.http.response.start``)."""
    scope = scope or websocket_scope()
    to_app_send, to_app = trio.open_memory_channel[dict[str, Any]](math.inf)
    from_app_send, from_app = trio.open_memory_channel[dict[str, Any]](math.inf)
    peer = WebSocketPeer(to_app_send, from_app)

    async def send(message: dict[str, Any]) -> None:
        await from_app_send.send(dict(message))

    async with trio.open_nursery() as nursery:

        async def run_app() -> None:
            try:
                await app(scope, to_app.receive, send)
            finally:
                peer.app_done.set()

        nursery.start_soon(run_app)
        await to_app_send.send({"type": "websocket.connect"})
        first = await peer.next()
        yield peer, first
        await peer.wait_app_done()
