"""Our servers under test: ``examples/echo_server.py``'s server, as users run it.

The only change is the POST body limit, raised from the default 4 MiB so that a
4 MiB tool argument (whose JSON-RPC envelope is a little larger) is accepted.
The limit has no effect on the cost of small messages.

``app`` is HTTP+SSE with the example's ``async def`` echo.  The factories build
the other variants, each from a fresh server:

* ``sync_app()``: HTTP+SSE with a plain ``def`` echo (run on a worker thread,
  as the SDK runs its ``def`` tools), the like-for-like partner of the SDK's
  ``def`` row; ``sync_app(inline=True)``: the same echo declared non-blocking
  (``@server.tool(inline=True)``), called without the thread hand-off;
* ``streamable_app(response_mode=...)``: the same ``MCPServer`` serving
  Streamable HTTP at ``/mcp`` (``http_app``), answering each request with a
  JSON body or with an event stream.
"""

from __future__ import annotations

import os
from typing import Any, Literal

from examples.echo_server import server
from trio_mcp_sse import MCPServer, SecuritySettings

MAX_BODY = int(os.environ.get("BENCH_MAX_BODY", str(8 * 1024 * 1024)))

app = server.sse_app(security=SecuritySettings(max_body_size=MAX_BODY))


def make_sync_server(*, inline: bool = False) -> MCPServer:
    """The example's server with ``echo`` as a plain ``def`` (``inline``: declared
    non-blocking, so called on the event loop's thread instead of a worker thread)."""
    sync_server = MCPServer("echo", "1.0.0")

    @sync_server.tool(name="echo", inline=inline)
    def echo_sync(text: str) -> str:
        """Return the text unchanged."""
        return text

    @sync_server.tool
    async def add(a: float, b: float) -> float:
        """Add two numbers."""
        return a + b

    return sync_server


def sync_app(*, inline: bool = False) -> Any:
    return make_sync_server(inline=inline).sse_app(security=SecuritySettings(max_body_size=MAX_BODY))


def streamable_app(*, response_mode: Literal["json", "sse"]) -> Any:
    """The example's server over Streamable HTTP at ``/mcp`` (``MCPServer.http_app``).

    ``response_mode`` is ``"json"`` (each request answered with one JSON body)
    or ``"sse"`` (with an event stream).  Everything else is the default a user
    gets, the in-memory event store included.  Each server process builds one
    app, so the example's module-level server is used as it is.
    """
    return server.http_app(response_mode=response_mode, security=SecuritySettings(max_body_size=MAX_BODY))


def __getattr__(name: str) -> Any:
    """The factories' apps by attribute, for ``python -m trio_mcp_sse serve`` (which takes
    ``module:attribute`` and calls nothing); each built on first use only."""
    factories = {
        "sync_sse_app": sync_app,
        "streamable_json_app": lambda: streamable_app(response_mode="json"),
    }
    if name not in factories:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return factories[name]()
