"""The example servers over Streamable HTTP, one app per response mode, for end-to-end tests.

``hypercorn --worker-class trio tests.apps.streamable_apps:everything_json`` and so on.
Each app also serves HTTP+SSE (``/sse``) and its metrics at ``/metrics`` (the
session gauge tells a test that a ``DELETE`` really ended the session).
"""

from __future__ import annotations

from examples import everything_server, notes_server

everything_sse = everything_server.server.http_app(response_mode="sse", metrics_path="/metrics")
everything_json = everything_server.server.http_app(response_mode="json", metrics_path="/metrics")
notes_sse = notes_server.server.http_app(response_mode="sse", metrics_path="/metrics")
notes_json = notes_server.server.http_app(response_mode="json", metrics_path="/metrics")
