"""The echo server plus a debug route (sessions, tasks, RSS), for end-to-end tests."""

from __future__ import annotations

from examples.echo_server import app, server

from .debug import install_debug_route

transport = app.extensions["trio_mcp_sse"]
install_debug_route(app, transport)

__all__ = ["app", "server"]
