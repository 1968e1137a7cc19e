"""The pieces under the server layer: transports, the session core, JSON-RPC and SSE framing.

For mounting an endpoint by hand, serving sessions with a handler of your own
(``async def handler(session: Session) -> None``) rather than ``MCPServer``,
or writing a transport: the three transports as ASGI apps, the
transport-agnostic session core, sans-io JSON-RPC intake and output, sans-io
SSE framing, and what an event store keeps (``docs/transports.md``).
"""

from ._event_store import Replay, StoredEvent
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
from ._public import publish
from ._session import (
    Delivery,
    Incoming,
    LocalSessionRegistry,
    Outgoing,
    Session,
    SessionClosed,
    SessionHandler,
    SessionManager,
    SessionRefused,
    SessionRegistry,
    SessionState,
)
from ._sse import ServerSentEvent, SSEDecoder, SSELimitExceeded, encode_comment, encode_event
from ._streamable import ResponseMode, StreamableHTTPTransport
from ._transport import SseServerTransport
from ._websocket import WebSocketServerTransport

__all__ = [
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
]

publish(__name__)
