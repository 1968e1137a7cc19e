"""Reference designs, measured next to the real servers to explain where the cost goes.

None of these is a usable MCP server: they answer ``initialize`` and the
``echo`` tool with no validation, no limits and no error handling, which is
exactly why they are useful as yardsticks.

Serve them with ``hypercorn --worker-class trio 'benchmarks.app_variants:bare'``
(or ``...:make_quart_routes()``, ``...:make_transport()``).

``bare``
    The HTTP+SSE echo as plain ASGI on the server: one dict of sessions, a
    memory channel per stream, the POST answered inline.  The floor of a
    Trio stack on hypercorn; nothing a framework or a protocol layer adds.

``make_quart_routes()``
    The same logic written the obvious Quart-Trio way: an async-generator
    ``GET`` route and a ``POST`` route, stdlib ``json``.  Every message pays
    Quart's request context, routing, request/response objects.

``make_transport()``
    Our real transport and server layer (``examples/echo_server.py``'s
    server), served as a bare ASGI app without the Quart-Trio app around it:
    the difference to ``ours`` is what the Quart app costs on the hot path
    when the transport answers before Quart (it should be next to nothing).
"""

from __future__ import annotations

import json
import os
import secrets
from typing import Any

import orjson
import trio

_ENDPOINT = b"event: endpoint\ndata: /messages/?session_id=%s\n\n"
_INIT_RESULT = {
    "protocolVersion": "2024-11-05",
    "capabilities": {"tools": {"listChanged": False}},
    "serverInfo": {"name": "echo", "version": "1.0.0"},
}
_STREAM_HEADERS = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]
_ACCEPTED_HEADERS = [(b"content-type", b"text/plain"), (b"content-length", b"8")]


def _answer(message: dict[str, Any]) -> dict[str, Any] | None:
    method = message.get("method")
    if "id" not in message:
        return None
    if method == "initialize":
        return {"jsonrpc": "2.0", "id": message["id"], "result": _INIT_RESULT}
    text = message["params"]["arguments"]["text"]
    return {"jsonrpc": "2.0", "id": message["id"], "result": {"content": [{"type": "text", "text": text}]}}


# -- bare ASGI ----------------------------------------------------------------------------------
_bare_sessions: dict[bytes, trio.MemorySendChannel[bytes]] = {}


async def bare(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["path"] == "/sse":
        session_id = secrets.token_hex(16).encode()
        outbound, inbound = trio.open_memory_channel[bytes](256)
        _bare_sessions[session_id] = outbound
        try:
            await send({"type": "http.response.start", "status": 200, "headers": _STREAM_HEADERS})
            await send({"type": "http.response.body", "body": _ENDPOINT % session_id, "more_body": True})
            async with trio.open_nursery() as nursery:

                async def watch() -> None:
                    while (await receive())["type"] != "http.disconnect":
                        pass
                    nursery.cancel_scope.cancel()

                nursery.start_soon(watch)
                async for data in inbound:
                    body = b"event: message\ndata: " + data + b"\n\n"
                    await send({"type": "http.response.body", "body": body, "more_body": True})
        finally:
            del _bare_sessions[session_id]
        return
    if scope["path"] != "/messages/":
        await send({"type": "http.response.start", "status": 404, "headers": [(b"content-length", b"0")]})
        await send({"type": "http.response.body", "body": b""})
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    session_id = scope["query_string"].partition(b"session_id=")[2]
    answer = _answer(orjson.loads(body))
    if answer is not None:
        _bare_sessions[session_id].send_nowait(orjson.dumps(answer))
    await send({"type": "http.response.start", "status": 202, "headers": _ACCEPTED_HEADERS})
    await send({"type": "http.response.body", "body": b"Accepted"})


# -- the obvious Quart-Trio routes ------------------------------------------------------------------
def make_quart_routes() -> Any:
    from quart import Response, request
    from quart_trio import QuartTrio

    app = QuartTrio("echo-routes")
    app.config["RESPONSE_TIMEOUT"] = None
    app.config["MAX_CONTENT_LENGTH"] = int(os.environ.get("BENCH_MAX_BODY", str(8 * 1024 * 1024)))
    sessions: dict[str, trio.MemorySendChannel[str]] = {}

    @app.get("/sse")
    async def stream() -> Any:
        session_id = secrets.token_hex(16)
        outbound, inbound = trio.open_memory_channel[str](256)
        sessions[session_id] = outbound

        async def events() -> Any:
            try:
                yield f"event: endpoint\ndata: /messages/?session_id={session_id}\n\n".encode()
                async for data in inbound:
                    yield f"event: message\ndata: {data}\n\n".encode()
            finally:
                sessions.pop(session_id, None)

        response = Response(events(), mimetype="text/event-stream", headers={"Cache-Control": "no-cache"})
        response.timeout = None
        return response

    @app.post("/messages/")
    async def message() -> Any:
        outbound = sessions.get(request.args.get("session_id", ""))
        if outbound is None:
            return "Could not find session", 404
        answer = _answer(json.loads(await request.get_data()))
        if answer is not None:
            outbound.send_nowait(json.dumps(answer, separators=(",", ":")))
        return "Accepted", 202

    return app


def make_transport() -> Any:
    from examples.echo_server import server
    from trio_mcp_sse import SecuritySettings

    limit = int(os.environ.get("BENCH_MAX_BODY", str(8 * 1024 * 1024)))
    return server.sse_transport(security=SecuritySettings(max_body_size=limit))

