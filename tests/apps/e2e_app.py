"""The echo server plus a debug route (sessions, tasks, RSS), for end-to-end tests."""

from __future__ import annotations

from examples.echo_server import server

from .debug import install_debug_route

app = server.http_app(websocket=True)  # the example's app, plus the opt-in WebSocket endpoint
transport = app.extensions["trio_mcp_sse"]
install_debug_route(app, transport)

__all__ = ["app", "server"]
