"""The echo server plus a route that reports the live session count, for end-to-end tests."""

from __future__ import annotations

from examples.echo_server import app, server

transport = app.extensions["trio_mcp_sse"]


@app.route("/debug/sessions")
async def session_count() -> dict[str, int]:
    return {"sessions": len(transport.sessions.registry)}


__all__ = ["app", "server"]
