"""Protocol constants the server layer shares: versions, log levels, error codes."""

from __future__ import annotations

from typing import Final, Literal

__all__ = [
    "LATEST_PROTOCOL_VERSION",
    "LOG_LEVELS",
    "RESOURCE_NOT_FOUND",
    "SERVER_BUSY",
    "SUPPORTED_PROTOCOL_VERSIONS",
    "LoggingLevel",
    "version_at_least",
]

SUPPORTED_PROTOCOL_VERSIONS: Final = ("2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25")
"""Revisions negotiated in ``initialize``, oldest first.

A client asking for one of these gets it echoed; any other request (an unknown
or a newer revision) is answered with the latest, as the lifecycle rules say.
"""
LATEST_PROTOCOL_VERSION: Final = SUPPORTED_PROTOCOL_VERSIONS[-1]

LoggingLevel = Literal["debug", "info", "notice", "warning", "error", "critical", "alert", "emergency"]
LOG_LEVELS: Final[dict[str, int]] = {
    name: rank
    for rank, name in enumerate(
        ("debug", "info", "notice", "warning", "error", "critical", "alert", "emergency")
    )
}
"""The syslog severities of ``logging/setLevel``, mapped to their order."""

RESOURCE_NOT_FOUND: Final = -32002
"""The spec's error code for ``resources/read`` of a URI the server does not know."""
SERVER_BUSY: Final = -32000
"""Implementation-defined: the session has too many requests in flight."""


def version_at_least(version: str | None, floor: str) -> bool:
    """Whether a negotiated revision includes a feature introduced in ``floor``.

    Revision names are dates, so within the supported set string order is
    time order; an unknown (``None``) version counts as the oldest.
    """
    return version is not None and version >= floor
