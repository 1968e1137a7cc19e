"""What can go wrong on the client side, as a small tree of exceptions.

Every failure a client caller can see is a :class:`ClientError` (or an
:class:`~trio_mcp_sse.MCPError`, which carries a JSON-RPC error the *server*
chose to answer with).  The tree is shaped by what a caller does about it:

* :class:`SSEConnectionError` -- the connection is unusable and must be
  reopened (the subclasses say why, for logs and for the one case worth
  retrying differently, a timeout);
* :class:`RequestTimeoutError` -- one request got no answer in time; the
  connection may be fine;
* :class:`ProtocolError` -- the server answered something this client cannot
  use (an invalid result, an unsupported protocol version);
* :class:`OAuthError` -- the client could not get the access token the server
  asks for (discovery, registration, the user's authorization, the token
  endpoint: the subclasses say which);
* :class:`SkillLoadError` -- a skill (the skills extension) cannot be loaded, and
  :class:`SkillVerificationError` -- what the server sent is not what the
  skill's entry describes, so it was not used.
"""

from __future__ import annotations

__all__ = [
    "AuthorizationError",
    "ClientError",
    "ConnectError",
    "ConnectionClosedError",
    "EndpointError",
    "EndpointOriginError",
    "EventTooLargeError",
    "OAuthDiscoveryError",
    "OAuthError",
    "PostError",
    "ProtocolError",
    "ProtocolVersionError",
    "ReadTimeoutError",
    "RequestTimeoutError",
    "SSEConnectionError",
    "SSEResponseError",
    "ServerExitedError",
    "SessionExpiredError",
    "SkillLoadError",
    "SkillVerificationError",
    "TokenError",
    "WebSocketClosedError",
    "WebSocketRejectedError",
]


class ClientError(Exception):
    """Base class of every error raised by :mod:`trio_mcp_sse.client`."""


class SSEConnectionError(ClientError):
    """The connection (HTTP+SSE or Streamable HTTP) failed or ended; open a new one to continue."""


class ConnectError(SSEConnectionError):
    """The event stream could not be opened: the server was unreachable (connection
    refused, DNS or TLS failure) or sent no response headers within ``timeout``."""


class SSEResponseError(SSEConnectionError):
    """The server answered the ``GET`` with something other than an event stream.

    ``status_code`` is the HTTP status and ``content_type`` the ``Content-Type``
    header (``None`` when absent), so a caller can tell a wrong URL (404) or an
    authentication problem (401/403) from a web page served at that address.
    """

    def __init__(self, message: str, *, status_code: int, content_type: str | None) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.content_type = content_type


class EndpointError(SSEConnectionError):
    """The stream did not announce a usable POST address: no ``endpoint`` event
    arrived within ``timeout``, or its data was empty or not a valid URL."""


class EndpointOriginError(EndpointError):
    """The ``endpoint`` event named another origin (scheme, host or port).

    Following it would send every message -- and the request headers, which may
    hold credentials -- to a host the caller never chose, so the client refuses.
    ``endpoint`` is the resolved URL the server asked for.
    """

    def __init__(self, message: str, *, endpoint: str) -> None:
        super().__init__(message)
        self.endpoint = endpoint


class ConnectionClosedError(SSEConnectionError):
    """The event stream ended or broke (server closed it, server process died,
    network failure), or the connection / session was already closed when used."""


class SessionExpiredError(ConnectionClosedError):
    """The server no longer knows the Streamable HTTP session (it answered ``404``
    to a request carrying the ``Mcp-Session-Id``): it expired, was deleted, or the
    server restarted.  The session cannot be resumed; open a new connection, which
    initializes a new session.  ``session_id`` is the id the server forgot.
    """

    def __init__(self, message: str, *, session_id: str) -> None:
        super().__init__(message)
        self.session_id = session_id


class EventTooLargeError(ConnectionClosedError):
    """The server sent an event (or a line) larger than ``max_event_size``; the
    client closed the connection rather than buffer it.

    A server streaming one endless event would otherwise grow the client's
    memory without bound while every read succeeds, so no read timeout fires.
    ``limit`` is the bound that was exceeded, in characters.
    """

    def __init__(self, message: str, *, limit: int) -> None:
        super().__init__(message)
        self.limit = limit


class WebSocketRejectedError(SSEConnectionError):
    """The server answered the WebSocket upgrade with an HTTP status instead of accepting it.

    ``status_code`` tells why: 400 (the ``mcp`` subprotocol was not offered),
    401 (a token is needed), 403 (Origin refused), 421 (Host refused), 503 (at
    the session cap, or draining).
    """

    def __init__(self, message: str, *, status_code: int) -> None:
        super().__init__(message)
        self.status_code = status_code


class WebSocketClosedError(ConnectionClosedError):
    """The WebSocket connection closed or died.

    ``code`` is the close code (``None`` when the connection died without a
    closing handshake, or a ping got no pong) and ``reason`` the close reason:
    1001 means the server is draining (reconnect later), 1009 a message over a
    size limit, 1011 a server failure (see ``docs/websocket.md`` for every code).
    """

    def __init__(self, message: str, *, code: int | None, reason: str) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason


class ServerExitedError(ConnectionClosedError):
    """The server process of a stdio connection exited, or closed its stdout, while in use.

    ``returncode`` is its exit status (negative: the signal that killed it), or
    ``None`` when it closed its stdout and did not exit at once.  Its stderr
    usually says why.
    """

    def __init__(self, message: str, *, returncode: int | None) -> None:
        super().__init__(message)
        self.returncode = returncode


class ReadTimeoutError(SSEConnectionError, TimeoutError):
    """Nothing arrived on the event stream for ``read_timeout`` seconds.

    Any bytes count as activity, keepalive comments included, so a healthy
    server that sends keepalives never triggers this.
    """


class PostError(SSEConnectionError):
    """A message could not be delivered by ``POST``.

    ``status_code`` is the HTTP status of a non-2xx answer, or ``None`` when the
    POST got no answer at all (network failure, or no answer within ``timeout``).
    """

    def __init__(self, message: str, *, status_code: int | None) -> None:
        super().__init__(message)
        self.status_code = status_code


class RequestTimeoutError(ClientError, TimeoutError):
    """A request got no response within its timeout.

    The client has already told the server to stop working on it
    (``notifications/cancelled``); the connection stays usable.
    """


class ProtocolError(ClientError):
    """The server's answer does not follow the protocol (e.g. a result of the wrong shape)."""


class ProtocolVersionError(ProtocolError):
    """The server chose a protocol version this client does not speak."""


class OAuthError(ClientError):
    """The server wants an access token (``401``) and the OAuth flow could not get one.

    Raised out of the connection (``open_session``, or the request that met the
    ``401``); a ``403 insufficient_scope`` the client could not step up from
    fails only that request (with the server's answer), not the connection.
    """


class OAuthDiscoveryError(OAuthError):
    """The protected resource or authorization server metadata is missing or unusable:
    no document found, a ``resource`` that does not cover the server's URL (RFC 8707:
    tokens for another resource are never asked for), an ``issuer`` that differs from the
    one the URL was built from, no PKCE S256, an endpoint that is not HTTPS, no way to
    register the client, or pre-registered credentials for another authorization server."""


class AuthorizationError(OAuthError):
    """The authorization step failed: the user or the server refused (``error`` holds the
    OAuth error code, e.g. ``access_denied``), the response failed the ``iss`` or ``state``
    check (RFC 9207 mix-up protection), or no response came in time."""

    def __init__(self, message: str, *, error: str | None = None) -> None:
        super().__init__(message)
        self.error = error


class TokenError(OAuthError):
    """The token (or registration) endpoint refused or could not be reached.

    ``error`` is the OAuth error code (``invalid_grant``, ``invalid_client``...)
    when the server gave one; ``status_code`` the HTTP status (``None``: no answer).
    """

    def __init__(self, message: str, *, error: str | None = None, status_code: int | None = None) -> None:
        super().__init__(message)
        self.error = error
        self.status_code = status_code


class SkillLoadError(ClientError):
    """A skill cannot be loaded: the server does not serve skills (or directory reads), its entry
    is unusable (no ``SKILL.md`` in its ``resources``, a file outside the skill, over the
    extension's limits, ``"dynamic"`` where that was not allowed), or a file is not in it.

    ``uri`` is the skill (or file) concerned, when there is one.
    """

    def __init__(self, message: str, *, uri: str | None = None) -> None:
        super().__init__(message)
        self.uri = uri


class SkillVerificationError(SkillLoadError):
    """What the server sent for a skill's file is not what the skill's entry says: another size,
    another digest, front matter that differs from the entry's, or a file the entry does not list.

    The content was not used (the skills extension forbids it): it may be corrupted, tampered
    with, or newer than the entry.  Get the entry again (``SkillsClient.get_skill``) and load
    the skill again, with the user's approval if it was bound to the old entry.  ``uri`` is the
    file.
    """
