"""Serving the Protected Resource Metadata document (RFC 9728) of an OAuth-protected server.

A client that gets ``401`` reads ``resource_metadata`` from the challenge, or
tries the well-known locations: first the path-suffixed one of the endpoint it
called (``/.well-known/oauth-protected-resource/mcp``), then the root one.
Every transport of an app answers the root path and its own endpoint's
(relative to the mount point), all with the same document, so whichever a
client tries is one round trip.

The document is public: it skips authentication and Origin checks and is
served with ``Access-Control-Allow-Origin: *`` (browser-based clients such as
the MCP Inspector fetch it cross-origin).  The ``Host`` check still applies,
since an unset ``resource`` is derived from the ``Host`` the client used.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

import orjson

from ._auth import WELL_KNOWN_RESOURCE, AuthSettings, base_url, metadata_path
from ._http import Outcome, Scope, Send, send_outcome
from ._security import SecuritySettings

__all__ = ["ResourceMetadataEndpoint"]

_CORS: Final = (
    (b"access-control-allow-origin", b"*"),
    (b"access-control-allow-methods", b"GET, HEAD, OPTIONS"),
    (b"access-control-allow-headers", b"mcp-protocol-version"),
    (b"access-control-max-age", b"86400"),
)


class ResourceMetadataEndpoint:
    """The metadata document at the root well-known path and at each endpoint's path-suffixed one."""

    __slots__ = ("_auth", "_security", "paths")

    def __init__(self, auth: AuthSettings, security: SecuritySettings, endpoints: Iterable[str]) -> None:
        assert auth.protected_resource is not None
        self._auth = auth
        self._security = security
        self.paths = frozenset({WELL_KNOWN_RESOURCE, *(metadata_path(endpoint) for endpoint in endpoints)})

    @classmethod
    def of(
        cls, auth: AuthSettings | None, security: SecuritySettings, endpoints: Iterable[str]
    ) -> ResourceMetadataEndpoint | None:
        """The endpoint for these settings, or ``None`` when the server publishes no metadata."""
        if auth is None or auth.protected_resource is None:
            return None
        return cls(auth, security, endpoints)

    async def serve(self, scope: Scope, send: Send) -> None:
        method = scope["method"]
        if method == "OPTIONS":
            await send_outcome(send, Outcome.PREFLIGHT, extra_headers=_CORS)
            return
        if method not in ("GET", "HEAD"):
            await send_outcome(send, Outcome.METHOD_NOT_ALLOWED, allow=b"GET, HEAD, OPTIONS")
            return
        server = scope.get("server")
        host = None
        for key, value in scope["headers"]:
            if key == b"host":
                host = value.decode("latin-1")
                break
        if not self._security.host_allowed(host, server[0] if server else None):
            await send_outcome(send, Outcome.MISDIRECTED_HOST)
            return
        assert self._auth.protected_resource is not None
        body = orjson.dumps(self._auth.protected_resource.document(base_url(scope)))
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode("ascii")),
            (b"cache-control", b"public, max-age=300"),
            *_CORS[:1],
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if method == "HEAD" else body})
