"""The echo server with a WebSocket endpoint that pings a silent client after 0.3 s and waits 1 s for an answer (liveness e2e tests)."""

from __future__ import annotations

from examples.echo_server import server
from trio_mcp_sse import WebSocketSettings

from .debug import install_debug_route

app = server.sse_app(websocket=WebSocketSettings(ping_interval=0.3, ping_timeout=1.0))
install_debug_route(app, app.extensions["trio_mcp_sse"])

__all__ = ["app"]
