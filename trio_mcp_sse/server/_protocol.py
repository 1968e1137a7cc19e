"""Protocol constants the server layer shares: versions, log levels, error codes.

The bottom layer of ``server/``: it imports nothing from the server package,
so every other module may import it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

from .._errors import RESOURCE_NOT_FOUND
from .._protocol_versions import HANDSHAKE_PROTOCOL_VERSIONS, LATEST_HANDSHAKE, version_at_least
from .._rpc import SERVER_BUSY

__all__ = [
    "LATEST_PROTOCOL_VERSION",
    "LOG_LEVELS",
    "RESOURCE_NOT_FOUND",
    "SERVER_BUSY",
    "SUPPORTED_PROTOCOL_VERSIONS",
    "CachePolicy",
    "LoggingLevel",
    "version_at_least",
]

SUPPORTED_PROTOCOL_VERSIONS: Final = HANDSHAKE_PROTOCOL_VERSIONS
"""Revisions negotiated in ``initialize``, oldest first (from :mod:`trio_mcp_sse._protocol_versions`).

A client asking for one of these gets it echoed; any other request (an unknown
or a newer revision) is answered with the latest, as the lifecycle rules say.
"""
LATEST_PROTOCOL_VERSION: Final = LATEST_HANDSHAKE

LoggingLevel = Literal["debug", "info", "notice", "warning", "error", "critical", "alert", "emergency"]
LOG_LEVELS: Final[dict[str, int]] = {
    name: rank
    for rank, name in enumerate(
        ("debug", "info", "notice", "warning", "error", "critical", "alert", "emergency")
    )
}
"""The syslog severities of ``logging/setLevel``, mapped to their order."""


@dataclass(frozen=True, slots=True)
class CachePolicy:
    """The caching hints of a cacheable result (protocol 2026-07-28: ``ttlMs``, ``cacheScope``).

    ``ttl_ms``: how long a client may reuse the result (0: re-fetch whenever
    needed).  ``scope``: ``"private"`` (reuse only within the same
    authorization context, the safe default) or ``"public"`` (no user-specific
    data: shared caches may keep it).  Set one per server
    (``MCPServer(cache=...)``: the lists, ``server/discover``, reads) and per
    resource (``cache=`` of :meth:`MCPServer.resource`).
    """

    ttl_ms: int = 0
    scope: Literal["private", "public"] = "private"

    def __post_init__(self) -> None:
        if not isinstance(self.ttl_ms, int) or isinstance(self.ttl_ms, bool) or self.ttl_ms < 0:
            raise ValueError("ttl_ms must be an integer >= 0")
        if self.scope not in ("private", "public"):
            raise ValueError("scope must be 'private' or 'public'")

    def hints(self) -> dict[str, object]:
        return {"ttlMs": self.ttl_ms, "cacheScope": self.scope}
