"""A server written with the official MCP SDK, served by trio-mcp-sse under Hypercorn's trio worker.

Run it:  hypercorn --worker-class trio examples.sdk_adapter:app
Connect: http://127.0.0.1:8000/sse

Needs the SDK: pip install 'trio-mcp-sse[sdk]'.  The SDK's own SSE app runs on
Starlette; here the same ``MCPServer`` object is served by this package's
transport instead (lean ASGI intake, bounded per-session channels, no
traceback when a client goes away).
"""

from mcp.server.mcpserver import Context, MCPServer

from trio_mcp_sse.contrib import sdk_sse_transport

mcp = MCPServer("sdk-on-trio", version="1.0.0")


@mcp.tool()
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@mcp.tool()
async def whoami(ctx: Context) -> str:
    """Report what the transport told the SDK about this request."""
    headers = ctx.headers or {}
    return f"request {ctx.request_id} from {headers.get('user-agent', 'an unknown agent')}"


@mcp.resource("greeting://{name}")
def greeting(name: str) -> str:
    """A personal greeting."""
    return f"Hello, {name}!"


app = sdk_sse_transport(mcp)
