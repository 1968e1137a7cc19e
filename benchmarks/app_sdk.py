"""Servers under test (b) and (c): the official SDK's ``MCPServer`` with the same echo tool.

Served by uvicorn (b) and by ``hypercorn --worker-class trio`` (c).  Defaults
everywhere except two settings that make the servers do the same work:

* the POST body limit, raised like ours so that a 4 MiB argument fits
  (``sse_app(max_request_body_size=...)``; the SDK's default is 4 MiB too);
* ``structured_output=False`` on the tools: by default the SDK answers a
  ``-> str`` tool with the text twice (a text block and ``structuredContent``),
  which would double its response size; ours sends one text block.
"""

from __future__ import annotations

import os

from mcp.server.mcpserver import MCPServer

MAX_BODY = int(os.environ.get("BENCH_MAX_BODY", str(8 * 1024 * 1024)))

server: MCPServer = MCPServer("echo", version="1.0.0")


@server.tool(structured_output=False)
async def echo(text: str) -> str:
    """Return the text unchanged."""
    return text


@server.tool(structured_output=False)
async def add(a: float, b: float) -> float:
    """Add two numbers."""
    return a + b


app = server.sse_app(max_request_body_size=MAX_BODY)
