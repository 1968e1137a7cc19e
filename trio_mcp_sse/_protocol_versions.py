"""The protocol revisions this project speaks: one table, for the server and the client alike.

Taken from ``mcp_types.version`` (the official registry) rather than spelled
out here, so a revision is named in exactly one place.  Two eras:

* ``HANDSHAKE_PROTOCOL_VERSIONS`` (2024-11-05 ... 2025-11-25): sessions open
  with an ``initialize`` handshake; these are negotiated in ``initialize``
  today, oldest first, and ``LATEST_HANDSHAKE`` is answered to a client asking
  for anything else.
* ``MODERN_PROTOCOL_VERSIONS`` (2026-07-28 on): stateless, no handshake;
  ``LATEST_MODERN`` is where a transport for that era starts.

The rules both the transport and the server layer apply to a request's
headers live here too, so that they read a request the same way.
"""

from __future__ import annotations

import base64
import binascii
from typing import Final

from mcp_types import version as _registry

__all__ = [
    "HANDSHAKE_PROTOCOL_VERSIONS",
    "LATEST_HANDSHAKE",
    "LATEST_MODERN",
    "MODERN_PROTOCOL_VERSIONS",
    "UNANNOUNCED_HTTP_VERSION",
    "decode_header_value",
    "is_modern_request",
    "version_at_least",
]

HANDSHAKE_PROTOCOL_VERSIONS: Final[tuple[str, ...]] = tuple(_registry.HANDSHAKE_PROTOCOL_VERSIONS)
"""Revisions negotiated in ``initialize``, oldest first."""
LATEST_HANDSHAKE: Final[str] = HANDSHAKE_PROTOCOL_VERSIONS[-1]
MODERN_PROTOCOL_VERSIONS: Final[tuple[str, ...]] = tuple(_registry.MODERN_PROTOCOL_VERSIONS)
"""Revisions of the stateless era (no ``initialize``), oldest first."""
LATEST_MODERN: Final[str] = MODERN_PROTOCOL_VERSIONS[-1]
UNANNOUNCED_HTTP_VERSION: Final = "2025-03-26"
"""What a Streamable HTTP server assumes when a request has no ``MCP-Protocol-Version``
header and nothing else tells (the specification's rule for backwards compatibility)."""


def version_at_least(version: str | None, floor: str) -> bool:
    """Whether a negotiated revision includes a feature introduced in ``floor``.

    Revision names are dates, so string order is time order; an unknown
    (``None``) version counts as the oldest.
    """
    return version is not None and version >= floor


def is_modern_request(header_version: str | None) -> bool:
    """Whether an HTTP request's ``MCP-Protocol-Version`` puts it in the era without a handshake.

    The one rule both the transport (which route serves the POST) and the
    server layer (which lifecycle applies) follow: no header, or a handshake
    revision, is the handshake era; any other value is served by the modern
    era, which answers a revision it does not speak with
    ``UnsupportedProtocolVersion`` (-32022) naming the ones it does.
    """
    return header_version is not None and header_version not in HANDSHAKE_PROTOCOL_VERSIONS


def decode_header_value(value: str | None) -> str | None:
    """A header value as the client meant it: ``=?base64?...?=`` carries any UTF-8 text.

    The server layer compares ``Mcp-Name`` and ``Mcp-Param-*`` with the body
    through it, and the transport reads a task's ``Mcp-Name`` through it to
    route the request to the task's worker.  ``None``: no header, or a
    sentinel whose base64 or UTF-8 is broken.
    """
    if value is None:
        return None
    value = value.strip()
    if not (value.startswith("=?base64?") and value.endswith("?=")):
        return value
    try:
        return base64.b64decode(value[9:-2], validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
