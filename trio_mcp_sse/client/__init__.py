"""The Trio MCP client: Streamable HTTP (:func:`connect_streamable_http`), HTTP+SSE
(:func:`connect_sse`) and WebSocket (:func:`connect_websocket`, non-standard) transports,
:class:`ClientSession`, and :func:`open_session`.

Public API; the ``_modules`` are private.  See ``docs/client.md``.
"""

from .._public import publish
from ._eras import MODERN_PROTOCOL_VERSION, ProtocolChoice
from ._errors import (
    AuthorizationError,
    ClientError,
    ConnectError,
    ConnectionClosedError,
    EndpointError,
    EndpointOriginError,
    EventTooLargeError,
    OAuthDiscoveryError,
    OAuthError,
    PostError,
    ProtocolError,
    ProtocolVersionError,
    ReadTimeoutError,
    RequestTimeoutError,
    ServerExitedError,
    SessionExpiredError,
    SkillLoadError,
    SkillVerificationError,
    SSEConnectionError,
    SSEResponseError,
    TokenError,
    WebSocketClosedError,
    WebSocketRejectedError,
)
from ._oauth import ClientCredentials, OAuth, OAuthBase
from ._oauth_redirect import AuthorizationHandler, LoopbackRedirect
from ._oauth_store import FileTokenStore, MemoryTokenStore, TokenStore
from ._oauth_wire import ClientRegistration, TokenSet
from ._open import TransportChoice, open_session
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
    Subscription,
)
from ._skills import DirectoryPage, LoadedSkill, SkillEntry, SkillResource, SkillsClient, SkillsPage
from ._stdio import StderrChoice, StdioConnection, connect_stdio
from ._streamable import StreamableHTTPConnection, connect_streamable_http
from ._tasks import TaskInfo, TaskStatusCallback
from ._transport import OutgoingMessage, SSEConnection, connect_sse
from ._websocket import WebSocketConnection, connect_websocket

__all__ = [
    "LATEST_PROTOCOL_VERSION",
    "MODERN_PROTOCOL_VERSION",
    "SUPPORTED_PROTOCOL_VERSIONS",
    "AuthorizationError",
    "AuthorizationHandler",
    "ClientCredentials",
    "ClientError",
    "ClientRegistration",
    "ClientSession",
    "ClientTransport",
    "ConnectError",
    "ConnectionClosedError",
    "DirectoryPage",
    "ElicitationHandler",
    "EndpointError",
    "EndpointOriginError",
    "EventTooLargeError",
    "FileTokenStore",
    "LoadedSkill",
    "LoopbackRedirect",
    "MemoryTokenStore",
    "NotificationHandler",
    "OAuth",
    "OAuthBase",
    "OAuthDiscoveryError",
    "OAuthError",
    "OutgoingMessage",
    "PostError",
    "ProgressCallback",
    "ProtocolChoice",
    "ProtocolError",
    "ProtocolVersionError",
    "ReadTimeoutError",
    "RequestTimeoutError",
    "RootsHandler",
    "SSEConnection",
    "SSEConnectionError",
    "SSEResponseError",
    "SamplingHandler",
    "ServerExitedError",
    "SessionExpiredError",
    "SkillEntry",
    "SkillLoadError",
    "SkillResource",
    "SkillVerificationError",
    "SkillsClient",
    "SkillsPage",
    "StderrChoice",
    "StdioConnection",
    "StreamableHTTPConnection",
    "Subscription",
    "TaskInfo",
    "TaskStatusCallback",
    "TokenError",
    "TokenSet",
    "TokenStore",
    "TransportChoice",
    "WebSocketClosedError",
    "WebSocketConnection",
    "WebSocketRejectedError",
    "connect_sse",
    "connect_stdio",
    "connect_streamable_http",
    "connect_websocket",
    "open_session",
]

publish(__name__)
