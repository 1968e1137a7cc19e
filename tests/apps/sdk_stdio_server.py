"""The official Python SDK's server over stdio, the judge of our stdio client.

Run as a script; it serves one session on stdin/stdout until stdin closes.
"""

from __future__ import annotations

import sys
import warnings

from mcp.server.mcpserver import Context, MCPServer

warnings.simplefilter("ignore")

server = MCPServer("sdk-stdio-server", version="2.0")


@server.tool()
async def echo(text: str) -> str:
    """Return the text unchanged."""
    return text


@server.tool()
async def count(n: int, ctx: Context) -> str:
    """Report progress n times, log once, then answer."""
    for step in range(1, n + 1):
        await ctx.report_progress(step, n, f"step {step}")
    await ctx.info("counted")
    return f"counted to {n}"


@server.tool()
async def shout(text: str) -> str:
    print("the SDK server's stderr", file=sys.stderr, flush=True)
    return text.upper()


if __name__ == "__main__":
    server.run("stdio")
