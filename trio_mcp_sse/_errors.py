"""Exceptions that carry protocol meaning."""

from __future__ import annotations

from typing import Any, Final

__all__ = [
    "INSUFFICIENT_SCOPE",
    "RESOURCE_NOT_FOUND",
    "ClientCapabilityError",
    "ClientRequestError",
    "ClientRequestTimeout",
    "MCPError",
    "ResourceNotFound",
    "ToolError",
]


RESOURCE_NOT_FOUND: Final = -32002
"""The spec's error code for ``resources/read`` of a URI the server does not know
(the wire code of every revision with an ``initialize`` handshake)."""


INSUFFICIENT_SCOPE: Final = -32003
"""This server's error code for a call its access token's scopes do not cover, answered in the
session (over HTTP the request is refused with ``403 insufficient_scope`` before it gets there;
the specification names no JSON-RPC code for it)."""


class MCPError(Exception):
    """A JSON-RPC error: raised by handlers to answer with it, raised by clients on receiving one.

    Raised from any server handler (a tool included), it becomes the JSON-RPC
    error response of that request, with this code, message and data.  It is
    also what a server->client request raises when the client answers with an
    error.
    """

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(f"{message} (code {code})")
        self.code = code
        self.message = message
        self.data = data


class ResourceNotFound(MCPError):
    """``resources/read`` of a URI nobody serves (code -32002, as the spec asks).

    Raise it from a templated resource when the URI matched the template but
    names nothing that exists.
    """

    def __init__(self, uri: str) -> None:
        super().__init__(RESOURCE_NOT_FOUND, f"Resource not found: {uri}", {"uri": uri})
        self.uri = uri


class ToolError(Exception):
    """Raise from a tool to report a failure *to the model* (``isError: true``).

    The message is the whole story: it is sent as the result's text and no
    traceback is logged, unlike an unexpected exception, whose result only
    says the tool failed, with the traceback in the server log.
    """


class ClientRequestError(MCPError):
    """The client answered a server->client request with an error (e.g. the user declined).

    A subclass of :class:`MCPError` carrying the client's code, message and
    data.  Escaping a tool it becomes the tool's ``isError`` result (the model
    should learn that the client refused), not a protocol error of ``tools/call``.
    """


class ClientCapabilityError(Exception):
    """A server->client request the client did not declare it could answer.

    Sampling, elicitation and roots are optional client features announced in
    ``initialize``; sending such a request to a client that did not announce
    it would at best earn a "method not found", so it is refused locally.
    """

    def __init__(self, method: str, capability: str, reason: str | None = None) -> None:
        super().__init__(
            reason or f"the client did not declare the {capability!r} capability, so it cannot answer {method}"
        )
        self.method = method
        self.capability = capability


class ClientRequestTimeout(TimeoutError):
    """A server->client request got no answer within its timeout.

    The client was told to stop working on it (``notifications/cancelled``).
    """

    def __init__(self, method: str, timeout: float) -> None:
        super().__init__(f"the client did not answer {method} within {timeout:g}s")
        self.method = method
        self.timeout = timeout
