"""trio-mcp-sse: the Model Context Protocol's HTTP transports (Streamable HTTP, HTTP+SSE), native to Trio.

Public API; everything in ``_modules`` is private.
"""

from ._access_token import AccessToken, VerificationUnavailable
from ._auth import AuthSettings, ProtectedResource, StaticTokens, TokenVerifier
from ._broker import Broker, BrokerSettings, BrokerUnavailable, Bus, MemoryBroker, RouteResult
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
from ._event_store import EventStore, MemoryEventStore, Replay, StoredEvent
from ._jsonrpc import (
    InvalidMessage,
    JSONRPCError,
    JSONRPCNotification,
    JSONRPCRequest,
    JSONRPCResponse,
    encode_message,
    error_response,
    parse_message,
    result_response,
)
from ._oauth_verifiers import IntrospectionVerifier, JWTVerifier
from ._public import publish
from ._redis_broker import RedisBroker
from ._security import SecuritySettings
from ._session import (
    Delivery,
    Incoming,
    LocalSessionRegistry,
    Outgoing,
    Session,
    SessionClosed,
    SessionHandler,
    SessionLimits,
    SessionManager,
    SessionRefused,
    SessionRegistry,
    SessionState,
)
from ._sse import ServerSentEvent, SSEDecoder, SSELimitExceeded, encode_comment, encode_event
from ._streamable import ResponseMode, StreamableHTTPTransport
from ._transport import SseServerTransport
from ._websocket import WebSocketServerTransport, WebSocketSettings
from .server import Context, MCPServer

__version__ = "0.1.0"

__all__ = [
    "AccessToken",
    "AuthSettings",
    "Broker",
    "BrokerSettings",
    "BrokerUnavailable",
    "Bus",
    "ClientCapabilityError",
    "ClientRequestError",
    "ClientRequestTimeout",
    "Context",
    "CorsSettings",
    "Delivery",
    "DrainGroup",
    "EventStore",
    "Incoming",
    "IntrospectionVerifier",
    "InvalidMessage",
    "JSONRPCError",
    "JSONRPCNotification",
    "JSONRPCRequest",
    "JSONRPCResponse",
    "JWTVerifier",
    "LocalSessionRegistry",
    "MCPError",
    "MCPServer",
    "MemoryBroker",
    "MemoryEventStore",
    "Outgoing",
    "ProtectedResource",
    "RedisBroker",
    "Replay",
    "ResourceNotFound",
    "ResponseMode",
    "RouteResult",
    "SSEDecoder",
    "SSELimitExceeded",
    "SecuritySettings",
    "ServerSentEvent",
    "Session",
    "SessionClosed",
    "SessionHandler",
    "SessionLimits",
    "SessionManager",
    "SessionRefused",
    "SessionRegistry",
    "SessionState",
    "SseServerTransport",
    "StaticTokens",
    "StoredEvent",
    "StreamableHTTPTransport",
    "TokenVerifier",
    "ToolError",
    "VerificationUnavailable",
    "WebSocketServerTransport",
    "WebSocketSettings",
    "__version__",
    "encode_comment",
    "encode_event",
    "encode_message",
    "error_response",
    "parse_message",
    "result_response",
]

publish(__name__)
