"""The official SDK's servers under test: ``MCPServer`` with the same echo tool as ours.

Served by uvicorn and by ``hypercorn --worker-class trio``.  Defaults
everywhere except the settings that make the servers do the same work:

* the POST body limit, raised like ours so that a 4 MiB argument fits
  (``max_request_body_size=...``; the SDK's default is 4 MiB too);
* ``structured_output=False`` on the tools: by default the SDK answers a
  ``-> str`` tool with the text twice (a text block and ``structuredContent``),
  which would double its response size; ours sends one text block.

``app`` is HTTP+SSE with an ``async def`` echo, like ``examples/echo_server.py``.
The factories (``uvicorn --factory``) build the other variants, each with a
fresh server, since an SDK server keeps the session manager of the last
Streamable HTTP app it built:

* ``sync_sse_app``: HTTP+SSE, a plain ``def`` echo (the SDK runs it on a
  worker thread, as ours does);
* ``streamable_json_app`` / ``streamable_sse_app``: Streamable HTTP at ``/mcp``,
  stateful (sessions), answering each request with a JSON body or with an
  event stream (``json_response``); otherwise the SDK's defaults (DNS-rebinding
  protection for 127.0.0.1, 30-minute idle timeout, at most 10,000 sessions).
"""

from __future__ import annotations

import os

from mcp.server.mcpserver import MCPServer
from starlette.applications import Starlette

MAX_BODY = int(os.environ.get("BENCH_MAX_BODY", str(8 * 1024 * 1024)))


def make_server(*, sync_tool: bool = False) -> MCPServer:
    """The echo server; ``sync_tool`` registers ``echo`` as a plain ``def``."""
    server: MCPServer = MCPServer("echo", version="1.0.0")
    if sync_tool:

        @server.tool(name="echo", structured_output=False)
        def echo_sync(text: str) -> str:
            """Return the text unchanged."""
            return text

    else:

        @server.tool(structured_output=False)
        async def echo(text: str) -> str:
            """Return the text unchanged."""
            return text

    @server.tool(structured_output=False)
    async def add(a: float, b: float) -> float:
        """Add two numbers."""
        return a + b

    return server


server = make_server()
app = server.sse_app(max_request_body_size=MAX_BODY)


def sync_sse_app() -> Starlette:
    return make_server(sync_tool=True).sse_app(max_request_body_size=MAX_BODY)


def streamable_json_app() -> Starlette:
    return make_server().streamable_http_app(json_response=True, max_request_body_size=MAX_BODY)


def streamable_sse_app() -> Starlette:
    return make_server().streamable_http_app(json_response=False, max_request_body_size=MAX_BODY)
