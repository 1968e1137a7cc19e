"""Servers under test (b) and (c): the official SDK's ``MCPServer`` with the same echo tool.

Served by uvicorn (b) and by ``hypercorn --worker-class trio`` (c).  Defaults
everywhere except the POST body limit, raised like ours so that a 4 MiB
argument fits (``sse_app(max_request_body_size=...)``).
"""

from __future__ import annotations

import os

from mcp.server.mcpserver import MCPServer

MAX_BODY = int(os.environ.get("BENCH_MAX_BODY", str(8 * 1024 * 1024)))

server: MCPServer = MCPServer("echo", version="1.0.0")


@server.tool()
async def echo(text: str) -> str:
    """Return the text unchanged."""
    return text


@server.tool()
async def add(a: float, b: float) -> float:
    """Add two numbers."""
    return a + b


app = server.sse_app(max_request_body_size=MAX_BODY)
