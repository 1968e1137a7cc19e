"""Protocol constants the server layer shares: versions, log levels, error codes.

The bottom layer of ``server/``: it imports nothing from the server package,
so every other module may import it.
"""

from __future__ import annotations

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
