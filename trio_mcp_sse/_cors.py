"""Opt-in CORS for the transport's endpoints, so browser-based clients can connect."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ._security import matches_pattern

__all__ = ["CorsSettings"]


@dataclass(frozen=True, slots=True)
class CorsSettings:
    """Cross-origin access for browser clients (off unless configured).

    ``allow_origins`` uses the same patterns as ``SecuritySettings.allowed_origins``
    and these origins also pass the Origin check.  The defaults cover what MCP
    clients send on every transport and revision (``Authorization``,
    ``Content-Type``, ``Mcp-Protocol-Version``, ``Mcp-Session-Id``,
    ``Last-Event-ID``, and the 2026-07-28 routing headers ``Mcp-Method`` and
    ``Mcp-Name``) and ``DELETE`` (a Streamable HTTP client ends its session
    with it).  A tool's own ``Mcp-Param-*`` headers are not known in advance:
    add them to ``allow_headers`` if browser clients call such tools.
    """

    allow_origins: Sequence[str]
    allow_methods: Sequence[str] = ("GET", "POST", "DELETE", "OPTIONS")
    allow_headers: Sequence[str] = (
        "authorization",
        "content-type",
        "mcp-protocol-version",
        "mcp-session-id",
        "last-event-id",
        "mcp-method",
        "mcp-name",
    )
    expose_headers: Sequence[str] = ()
    allow_credentials: bool = False
    max_age: int = 600

    def __post_init__(self) -> None:
        if isinstance(self.allow_origins, str):
            raise TypeError("allow_origins must be a sequence of patterns, not a single string")
        if self.allow_credentials and "*" in self.allow_origins:
            raise ValueError("allow_credentials cannot be combined with the '*' origin")

    def allows(self, origin: str | None) -> bool:
        return origin is not None and matches_pattern(origin.lower(), self.allow_origins)

    def response_headers(self, origin: str) -> list[tuple[bytes, bytes]]:
        """Headers for an actual (non-preflight) response to an allowed origin."""
        headers = [(b"access-control-allow-origin", origin.encode("latin-1")), (b"vary", b"Origin")]
        if self.allow_credentials:
            headers.append((b"access-control-allow-credentials", b"true"))
        if self.expose_headers:
            headers.append((b"access-control-expose-headers", ", ".join(self.expose_headers).encode("latin-1")))
        return headers

    def preflight_headers(self, origin: str) -> list[tuple[bytes, bytes]]:
        return [
            *self.response_headers(origin),
            (b"access-control-allow-methods", ", ".join(self.allow_methods).encode("latin-1")),
            (b"access-control-allow-headers", ", ".join(self.allow_headers).encode("latin-1")),
            (b"access-control-max-age", str(self.max_age).encode("ascii")),
        ]
