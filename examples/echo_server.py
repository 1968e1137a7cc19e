"""The smallest useful MCP server: two tools over HTTP+SSE.

Run it:  hypercorn --worker-class trio examples.echo_server:app
Connect: http://127.0.0.1:8000/sse  (or ws://127.0.0.1:8000/ws, the non-standard WebSocket transport)
"""

from trio_mcp_sse import MCPServer

server = MCPServer("echo", "1.0.0")


@server.tool
async def echo(text: str) -> str:
    """Return the text unchanged."""
    return text


@server.tool
async def add(a: float, b: float) -> float:
    """Add two numbers."""
    return a + b


app = server.sse_app()
