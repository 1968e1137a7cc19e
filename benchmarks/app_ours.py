"""Server under test (a): ``examples/echo_server.py``, as users run it.

The only change is the POST body limit, raised from the default 4 MiB so that a
4 MiB tool argument (whose JSON-RPC envelope is a little larger) is accepted.
The limit has no effect on the cost of small messages.
"""

from __future__ import annotations

import os

from examples.echo_server import server
from trio_mcp_sse import SecuritySettings

MAX_BODY = int(os.environ.get("BENCH_MAX_BODY", str(8 * 1024 * 1024)))

app = server.sse_app(security=SecuritySettings(max_body_size=MAX_BODY))
