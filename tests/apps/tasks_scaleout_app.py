"""The everything server (tools that run as tasks among them) for ``serve --workers N``, with probes for tests.

tests/test_scaleout_tasks_e2e.py runs it: ``slow_compute`` and ``confirm_delete``
(examples/everything_server.py) are the tasks it starts on one worker and
polls, answers and cancels through another.  As in tests/apps/scaleout_app.py,
``GET /worker`` answers the pid of the worker that took the connection (and
``?block=S`` holds that worker for S seconds, so that a connection opened
meanwhile can only reach another one), and ``/metrics`` gives each worker's
forwarding counters.
"""

from __future__ import annotations

from examples.everything_server import server
from tests.apps.worker_route import add_worker_route

app = server.http_app(metrics_path="/metrics")
add_worker_route(app)

__all__ = ["app", "server"]
