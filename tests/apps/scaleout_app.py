"""The app of the scale-out tests: echo tools, a tool naming the owner's pid, a route naming the worker's.

``serve --workers N --broker URL`` runs it (tests/test_scaleout_e2e.py).
``slow_echo`` is work still running when a worker drains.  ``owner_pid`` runs
in the session's owner (a forwarded request is answered there), so a test
learns which worker holds a session.  ``GET /worker`` answers the pid of the
worker that took the connection: ``/metrics`` does not say which process it
came from, and a test that sums the counters of every worker must tell them
apart (it asks both on one connection).  ``GET /worker?block=S`` blocks that
worker's event loop for S seconds, so a new connection meanwhile can only be
accepted by another worker.
"""

from __future__ import annotations

import os

import trio

from tests.apps.worker_route import add_worker_route
from trio_mcp_sse import MCPServer

server = MCPServer("scaleout", "1.0.0")


@server.tool
async def echo(text: str) -> str:
    """Return the text unchanged."""
    return text


@server.tool
async def slow_echo(text: str, seconds: float) -> str:
    """Return the text after ``seconds``: a request still running when its worker is told to stop."""
    await trio.sleep(seconds)
    return text


@server.tool
async def owner_pid() -> str:
    """The pid of the worker process holding this session."""
    return str(os.getpid())


app = server.http_app(metrics_path="/metrics")
add_worker_route(app)


__all__ = ["app", "server"]
