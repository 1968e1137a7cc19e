"""``GET /worker`` for the scale-out test apps: which worker process took the connection.

``/metrics`` does not say which process it came from, and a test that sums the
counters of every worker must tell them apart (it asks both on one
connection).  ``GET /worker?block=S`` blocks that worker's event loop for S
seconds, so a new connection meanwhile can only be accepted by another worker.
"""

from __future__ import annotations

import os
import time
from typing import Any

from quart import request


def add_worker_route(app: Any) -> None:
    """``GET /worker`` on ``app``: the pid of the worker that took the connection (``?block=S``: hold it)."""

    @app.route("/worker")
    async def worker() -> dict[str, object]:
        block = float(request.args.get("block", 0))
        if block:
            time.sleep(block)  # noqa: ASYNC251 -- the point: this process accepts nothing meanwhile
        return {"pid": os.getpid()}
