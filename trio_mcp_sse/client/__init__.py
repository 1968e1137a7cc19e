"""The Trio MCP client: HTTP+SSE transport (:func:`connect_sse`) and :class:`ClientSession`.

Public API; the ``_modules`` are private.  See ``docs/client.md``.
"""

from .._public import publish
from ._errors import (
    ClientError,
    ConnectError,
    ConnectionClosedError,
    EndpointError,
    EndpointOriginError,
    EventTooLargeError,
    PostError,
    ProtocolError,
    ProtocolVersionError,
    ReadTimeoutError,
    RequestTimeoutError,
    SSEConnectionError,
    SSEResponseError,
)
from ._session import (
    LATEST_PROTOCOL_VERSION,
    SUPPORTED_PROTOCOL_VERSIONS,
    ClientSession,
    ClientTransport,
    ElicitationHandler,
    NotificationHandler,
    ProgressCallback,
    RootsHandler,
    SamplingHandler,
    open_session,
)
from ._transport import OutgoingMessage, SSEConnection, connect_sse

__all__ = [
    "LATEST_PROTOCOL_VERSION",
    "SUPPORTED_PROTOCOL_VERSIONS",
    "ClientError",
    "ClientSession",
    "ClientTransport",
    "ConnectError",
    "ConnectionClosedError",
    "ElicitationHandler",
    "EndpointError",
    "EndpointOriginError",
    "EventTooLargeError",
    "NotificationHandler",
    "OutgoingMessage",
    "PostError",
    "ProgressCallback",
    "ProtocolError",
    "ProtocolVersionError",
    "ReadTimeoutError",
    "RequestTimeoutError",
    "RootsHandler",
    "SSEConnection",
    "SSEConnectionError",
    "SSEResponseError",
    "SamplingHandler",
    "connect_sse",
    "open_session",
]

publish(__name__)
