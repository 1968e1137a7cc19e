"""The echo server plus ``GET /worker``: which process answered, and the broker it was given.

``serve --workers N`` tests tell the workers apart by their pid.  The kernel
gives a new connection to whichever worker accepts first, so to reach a
*second* worker for sure a test occupies the first: ``GET /worker?block=S``
blocks the answering process's event loop for S seconds (no accepts there
meanwhile), then answers.  With
``WORKER_APP_CRASH`` set, every import of this module ends its process with
status 3: a worker that can never start, as after a bad deploy.
"""

from __future__ import annotations

import os
import time

from quart import request

from examples.echo_server import server

if os.environ.get("WORKER_APP_CRASH"):
    os._exit(3)

app = server.http_app()


@app.route("/worker")
async def worker() -> dict[str, object]:
    block = float(request.args.get("block", 0))
    if block:
        time.sleep(block)  # noqa: ASYNC251 -- the point: this process accepts nothing meanwhile
    return {
        "pid": os.getpid(),
        "broker": os.environ.get("TRIO_MCP_SSE_BROKER"),
        "request_state_secret": os.environ.get("TRIO_MCP_SSE_REQUEST_STATE_SECRET"),
    }


__all__ = ["app"]
