"""trio-mcp-sse: the Model Context Protocol's HTTP transports (Streamable HTTP, HTTP+SSE), native to Trio.

Public API for server authors: ``MCPServer`` and its ``Context``, the errors a
handler raises or meets, and the settings a deployment passes to
``MCPServer.http_app(...)``.  The broker interface is in
:mod:`trio_mcp_sse.broker`; transports, sessions, JSON-RPC and SSE framing are
in :mod:`trio_mcp_sse.lowlevel`.  Everything in ``_modules`` is private.
"""

import sys as _sys
import warnings as _warnings
from types import ModuleType as _ModuleType
from typing import Any as _Any

from . import broker, lowlevel
from ._access_token import AccessToken, VerificationUnavailable
from ._auth import AuthSettings, ProtectedResource, StaticTokens, TokenVerifier
from ._cors import CorsSettings
from ._drain import DrainGroup
from ._errors import (
    ClientCapabilityError,
    ClientRequestError,
    ClientRequestTimeout,
    MCPError,
    ResourceNotFound,
    ToolError,
)
from ._event_store import EventStore, MemoryEventStore
from ._oauth_verifiers import IntrospectionVerifier, JWTVerifier
from ._public import publish
from ._security import SecuritySettings
from ._session import SessionLimits
from ._websocket import WebSocketSettings
from .broker import BrokerSettings, RedisBroker
from .server import Context, MCPServer

__version__ = "0.1.0"

__all__ = [
    "AccessToken",
    "AuthSettings",
    "BrokerSettings",
    "ClientCapabilityError",
    "ClientRequestError",
    "ClientRequestTimeout",
    "Context",
    "CorsSettings",
    "DrainGroup",
    "EventStore",
    "IntrospectionVerifier",
    "JWTVerifier",
    "MCPError",
    "MCPServer",
    "MemoryEventStore",
    "ProtectedResource",
    "RedisBroker",
    "ResourceNotFound",
    "SecuritySettings",
    "SessionLimits",
    "StaticTokens",
    "TokenVerifier",
    "ToolError",
    "VerificationUnavailable",
    "WebSocketSettings",
    "__version__",
]

publish(__name__)

_MOVED: dict[str, _ModuleType] = {
    **dict.fromkeys(("Broker", "BrokerUnavailable", "Bus", "MemoryBroker", "RouteResult"), broker),
    **dict.fromkeys(
        (
            "Delivery",
            "Incoming",
            "InvalidMessage",
            "JSONRPCError",
            "JSONRPCNotification",
            "JSONRPCRequest",
            "JSONRPCResponse",
            "LocalSessionRegistry",
            "Outgoing",
            "Replay",
            "ResponseMode",
            "SSEDecoder",
            "SSELimitExceeded",
            "ServerSentEvent",
            "Session",
            "SessionClosed",
            "SessionHandler",
            "SessionManager",
            "SessionRefused",
            "SessionRegistry",
            "SessionState",
            "SseServerTransport",
            "StoredEvent",
            "StreamableHTTPTransport",
            "WebSocketServerTransport",
            "encode_comment",
            "encode_event",
            "encode_message",
            "error_response",
            "parse_message",
            "result_response",
        ),
        lowlevel,
    ),
}
"""Names this namespace exported before they moved to a namespace of their own, and where.

They still resolve here, with a :class:`DeprecationWarning`, but are not in
``__all__`` nor ``dir()``."""


def __getattr__(name: str) -> _Any:
    home = _MOVED.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    # ``from trio_mcp_sse import X`` looks X up twice: importlib's check of the
    # names to import, then the statement itself.  Warn once, at the statement.
    caller = _sys._getframe(1).f_code
    if not (caller.co_name == "_handle_fromlist" and "importlib" in caller.co_filename):
        _warnings.warn(
            f"{__name__}.{name} moved to {home.__name__}.{name}; import it from there",
            DeprecationWarning,
            stacklevel=2,
        )
    return getattr(home, name)
