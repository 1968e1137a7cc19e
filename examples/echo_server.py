"""The smallest useful MCP server: two tools, over Streamable HTTP and HTTP+SSE.

Run it:  python -m trio_mcp_sse serve examples.echo_server:app
   (or:  hypercorn --worker-class trio examples.echo_server:app)
Connect: http://127.0.0.1:8000/mcp (Streamable HTTP), http://127.0.0.1:8000/sse (HTTP+SSE)
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


app = server.http_app()
