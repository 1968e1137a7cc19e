"""trio-mcp-sse: the Model Context Protocol's HTTP+SSE transport, native to Trio.

Public API; everything in ``_modules`` is private.
"""

from ._errors import MCPError, ToolError
from ._jsonrpc import InvalidMessage, parse_message
from ._security import SecuritySettings
from ._session import (
    Delivery,
    Incoming,
    LocalSessionRegistry,
    Session,
    SessionClosed,
    SessionHandler,
    SessionLimits,
    SessionManager,
    SessionRegistry,
)
from ._sse import ServerSentEvent, SSEDecoder, encode_comment, encode_event
from ._transport import SseServerTransport
from .server import Context, MCPServer

__version__ = "0.1.0"

__all__ = [
    "Context",
    "Delivery",
    "Incoming",
    "InvalidMessage",
    "LocalSessionRegistry",
    "MCPError",
    "MCPServer",
    "SSEDecoder",
    "SecuritySettings",
    "ServerSentEvent",
    "Session",
    "SessionClosed",
    "SessionHandler",
    "SessionLimits",
    "SessionManager",
    "SessionRegistry",
    "SseServerTransport",
    "ToolError",
    "__version__",
    "encode_comment",
    "encode_event",
    "parse_message",
]
