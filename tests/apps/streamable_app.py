"""An echo server over Streamable HTTP only, with a debug route, for end-to-end tests.

Environment: ``MAX_SESSIONS`` (the session cap), ``MAX_BODY`` (the body limit in bytes).
Bearer tokens ``alice-token`` and ``bob-token`` name two principals; requests without a
token are anonymous.
"""

from __future__ import annotations

import os

from trio_mcp_sse import AuthSettings, MCPServer, SecuritySettings, SessionLimits, StaticTokens

from .debug import install_debug_route

server = MCPServer("streamable-e2e", "1.0.0")


@server.tool
async def echo(text: str) -> str:
    """Return the text unchanged."""
    return text


app = server.http_app(
    sse_path=None,
    limits=SessionLimits(max_sessions=int(os.environ.get("MAX_SESSIONS", "10000"))),
    security=SecuritySettings(max_body_size=int(os.environ.get("MAX_BODY", str(4 * 2**20)))),
    auth=AuthSettings(StaticTokens({"alice-token": "alice", "bob-token": "bob"}), required=False),
)
install_debug_route(app, app.extensions["trio_mcp_sse"])
