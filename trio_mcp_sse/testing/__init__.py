"""Test MCP servers and ASGI apps in memory: no sockets, deterministic under a mock clock.

Two levels, usable separately (see ``docs/testing.md``):

* the session level -- :func:`serve_sessions` / :func:`connected_client` give a
  :class:`SessionClient` that speaks JSON-RPC straight to a server's session,
  the quickest way to test tools, resources and prompts;
* the HTTP level -- :func:`run_asgi_app` runs an ASGI app's lifespan and gives
  an :class:`ASGITestClient` for plain requests, streaming responses
  (:class:`EventStream`), whole HTTP+SSE sessions (:class:`SSETestSession`) and
  Streamable HTTP sessions (:class:`StreamableTestSession`);
* for client code -- :func:`open_http_client` gives an ``httpx.AsyncClient``
  whose requests an ASGI app serves in memory, to pass as ``http_client=`` to
  :func:`~trio_mcp_sse.client.connect_sse` or ``open_session``.

Every wait is bounded (10 s), so a test expecting a message that never comes
fails rather than hangs.
"""

from .._public import publish
from ._asgi import (
    DEFAULT_HEADERS,
    ASGIResponse,
    ASGITestClient,
    EventStream,
    Headers,
    SSETestSession,
    make_scope,
    run_asgi_app,
)
from ._http_client import InMemoryHTTPTransport, open_http_client, open_http_transport
from ._sessions import SessionClient, SessionHost, connected_client, serve_sessions
from ._streamable import ACCEPT_BOTH, StreamableTestSession, messages_of, read_messages

__all__ = [
    "ACCEPT_BOTH",
    "DEFAULT_HEADERS",
    "ASGIResponse",
    "ASGITestClient",
    "EventStream",
    "Headers",
    "InMemoryHTTPTransport",
    "SSETestSession",
    "SessionClient",
    "SessionHost",
    "StreamableTestSession",
    "connected_client",
    "make_scope",
    "messages_of",
    "open_http_client",
    "open_http_transport",
    "read_messages",
    "run_asgi_app",
    "serve_sessions",
]

publish(__name__)
