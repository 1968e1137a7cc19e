"""The two protocol eras, as the client sees them: what is decided without any I/O.

Revisions 2024-11-05 ... 2025-11-25 (the *handshake era*) open a session with
``initialize``; revision 2026-07-28 on (the *modern era*) has no handshake and
no protocol session: every request carries its protocol version, the client's
identity and capabilities in ``params._meta``, and over HTTP mirrors the
version, the method and the name it acts on in headers so intermediaries can
route without parsing bodies.  This module holds those rules as pure
functions, for :class:`~trio_mcp_sse.client.ClientSession` (the envelope, the
era probe's verdict, the multi round-trip answers) and the Streamable HTTP
transport (the headers), so each is decided in one place.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any, Final, Literal, TypeAlias

import mcp_types

from .._errors import MCPError
from .._protocol_versions import HANDSHAKE_PROTOCOL_VERSIONS, MODERN_PROTOCOL_VERSIONS

__all__ = [
    "HEADER_MISMATCH",
    "MODERN_PROTOCOL_VERSION",
    "UNSUPPORTED_PROTOCOL_VERSION",
    "ProbeVerdict",
    "ProtocolChoice",
    "check_protocol_choice",
    "mirrored_headers",
    "modern_version_of",
    "param_header_paths",
    "param_headers",
    "probe_verdict",
    "request_envelope",
]

ProtocolChoice: TypeAlias = Literal["auto", "handshake", "2026-07-28"]
"""Which protocol era a session speaks.

``"auto"``: ask ``server/discover`` first and speak 2026-07-28 if the server
does, else fall back to the ``initialize`` handshake; ``"handshake"``: only
``initialize`` (revisions up to 2025-11-25); ``"2026-07-28"``: only the
modern era, failing against a server that does not speak it.
"""
PROTOCOL_CHOICES: Final[tuple[ProtocolChoice, ...]] = ("auto", "handshake", "2026-07-28")

MODERN_PROTOCOL_VERSION: Final[str] = MODERN_PROTOCOL_VERSIONS[-1]
"""The newest modern revision this client speaks: what ``server/discover`` is asked at."""

HEADER_MISMATCH: Final[int] = mcp_types.HEADER_MISMATCH
"""-32020: the request's HTTP headers do not match its body (a modern server's refusal)."""
UNSUPPORTED_PROTOCOL_VERSION: Final[int] = mcp_types.UNSUPPORTED_PROTOCOL_VERSION
"""-32022: the server does not speak the request's protocol version; ``data.supported`` says what it does."""

_NAMED_METHODS: Final = {
    "tools/call": "name",
    "prompts/get": "name",
    "resources/read": "uri",
    "tasks/get": "taskId",  # SEP-2663: a task's requests name it, for routing to its owner
    "tasks/update": "taskId",
    "tasks/cancel": "taskId",
}
"""Methods whose target is mirrored in ``Mcp-Name``, and the parameter that names it."""
_SENTINEL_PREFIX: Final = "=?base64?"
_SENTINEL_SUFFIX: Final = "?="


def check_protocol_choice(protocol: str) -> ProtocolChoice:
    for choice in PROTOCOL_CHOICES:
        if protocol == choice:
            return choice
    raise ValueError(f"protocol must be one of {', '.join(map(repr, PROTOCOL_CHOICES))}, got {protocol!r}")


def request_envelope(
    version: str,
    *,
    client_info: Mapping[str, Any],
    capabilities: Mapping[str, Any],
    log_level: str | None = None,
) -> dict[str, Any]:
    """The ``_meta`` entries every modern request carries (the handshake's content, per request)."""
    envelope: dict[str, Any] = {
        mcp_types.PROTOCOL_VERSION_META_KEY: version,
        mcp_types.CLIENT_INFO_META_KEY: dict(client_info),
        mcp_types.CLIENT_CAPABILITIES_META_KEY: dict(capabilities),
    }
    if log_level is not None:
        envelope[mcp_types.LOG_LEVEL_META_KEY] = log_level
    return envelope


def modern_version_of(params: Any) -> str | None:
    """The protocol version a request's envelope declares, or ``None`` for a handshake-era request."""
    meta = params.get("_meta") if isinstance(params, dict) else None
    version = meta.get(mcp_types.PROTOCOL_VERSION_META_KEY) if isinstance(meta, dict) else None
    return version if isinstance(version, str) else None


def mirrored_headers(method: str, params: Any) -> dict[str, str]:
    """``MCP-Protocol-Version``, ``Mcp-Method`` and ``Mcp-Name`` for a modern request's POST.

    Empty for a handshake-era request: those revisions define none of them
    (the version header comes from ``initialize`` there).
    """
    version = modern_version_of(params)
    if version is None:
        return {}
    headers = {"mcp-protocol-version": version, "mcp-method": method}
    name_field = _NAMED_METHODS.get(method)
    if name_field is not None:
        name = params.get(name_field)
        if isinstance(name, str):
            headers["mcp-name"] = header_value(name)
    return headers


def header_value(value: str) -> str:
    """``value`` as an HTTP header value: as is when that is safe, else the Base64 sentinel form.

    Safe means visible ASCII and inner spaces or tabs only; a value that looks
    like the sentinel itself is encoded too, so decoding is never ambiguous.
    """
    plain = (
        value != ""
        and value == value.strip(" \t")
        and all(char in "\t " or "\x21" <= char <= "\x7e" for char in value)
        and not (value.startswith(_SENTINEL_PREFIX) and value.endswith(_SENTINEL_SUFFIX))
    )
    if plain:
        return value
    encoded = base64.b64encode(value.encode("utf-8")).decode("ascii")
    return f"{_SENTINEL_PREFIX}{encoded}{_SENTINEL_SUFFIX}"


ProbeVerdict: TypeAlias = tuple[Literal["handshake"], None] | tuple[Literal["retry"], str]
"""What an error answer to the ``server/discover`` probe means: fall back to
``initialize``, or ask again at the modern version the server named."""


def supported_versions(error: MCPError) -> list[str] | None:
    """``data.supported`` of an UnsupportedProtocolVersion error (``None`` if it is not one)."""
    if error.code != UNSUPPORTED_PROTOCOL_VERSION or not isinstance(error.data, dict):
        return None
    supported = error.data.get("supported")
    if not isinstance(supported, list):
        return None
    return [version for version in supported if isinstance(version, str)]


def probe_verdict(error: MCPError, *, may_retry: bool) -> ProbeVerdict:
    """Decide from the server's refusal of the ``server/discover`` probe.

    Only a recognised modern error is evidence of a modern server (the
    specification's rule): an UnsupportedProtocolVersion naming a modern
    version we speak means ask again at that one (once: a server may refuse
    a first request whatever it asks, and a second refusal is final); one naming only
    modern versions we do not speak, or a HeaderMismatch, is a modern server
    we cannot talk to, so the error is raised.  Anything else -- ``-32601``, an
    HTTP ``4xx`` without a modern error, a missing session -- means a
    handshake-era server: fall back to ``initialize``.
    """
    if error.code == HEADER_MISMATCH:
        raise error
    supported = supported_versions(error)
    if supported is None:
        return ("handshake", None)
    mutual = [version for version in MODERN_PROTOCOL_VERSIONS if version in supported]
    if mutual and may_retry:
        return ("retry", mutual[-1])
    if supported and not any(version in HANDSHAKE_PROTOCOL_VERSIONS for version in supported):
        raise error
    return ("handshake", None)


_TOKEN_CHARS: Final = frozenset(
    "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
)
_HEADER_PARAM_TYPES: Final = frozenset({"string", "integer", "boolean"})
_MAX_SAFE_INTEGER: Final = 2**53 - 1


def param_header_paths(input_schema: Any) -> dict[str, tuple[str, ...]]:
    """The ``x-mcp-header`` annotations of a tool's input schema: header name -> argument path.

    Raises :class:`ValueError` saying why when one breaks the rules (empty,
    not an HTTP token, not unique ignoring case, on a non-primitive or
    ``number`` property, or not reachable through ``properties`` alone): such
    a tool must not be used over Streamable HTTP.
    """
    found: dict[str, tuple[str, ...]] = {}

    def walk(node: Any, path: tuple[str | int, ...], names_properties: bool) -> None:
        if isinstance(node, list):
            for index, item in enumerate(node):
                walk(item, (*path, index), False)
            return
        if not isinstance(node, dict):
            return
        if not names_properties and "x-mcp-header" in node:
            found_at(node, path)
        for key, value in node.items():
            # The values of a "properties" map are schemas; its keys are names, not keywords.
            walk(value, (*path, key), key == "properties" and not names_properties)

    def found_at(node: dict[str, Any], path: tuple[str | int, ...]) -> None:
        name = node["x-mcp-header"]
        if not isinstance(name, str) or not name:
            raise ValueError("an x-mcp-header is empty or not a string")
        if not all(char in _TOKEN_CHARS for char in name):
            raise ValueError(f"x-mcp-header {name!r} is not an HTTP header name token")
        if name.lower() in (known.lower() for known in found):
            raise ValueError(f"x-mcp-header {name!r} is used twice (names ignore case)")
        chain = path[0::2]
        if not path or len(path) % 2 or any(step != "properties" for step in chain):
            raise ValueError(f"x-mcp-header {name!r} is not on a property reachable through properties")
        if node.get("type") not in _HEADER_PARAM_TYPES:
            raise ValueError(f"x-mcp-header {name!r} is on a property that is not a string, integer or boolean")
        found[name] = tuple(str(step) for step in path[1::2])

    walk(input_schema, (), False)
    return found


def param_headers(paths: Mapping[str, tuple[str, ...]], arguments: Any) -> dict[str, str]:
    """``Mcp-Param-*`` headers for a ``tools/call``: each annotated argument present, encoded.

    An argument that is absent or ``null`` gets no header.
    """
    headers: dict[str, str] = {}
    for name, path in paths.items():
        value = arguments
        for step in path:
            value = value.get(step) if isinstance(value, dict) else None
        if isinstance(value, bool):
            headers[f"mcp-param-{name.lower()}"] = "true" if value else "false"
        elif isinstance(value, int) and abs(value) <= _MAX_SAFE_INTEGER:
            headers[f"mcp-param-{name.lower()}"] = str(value)
        elif isinstance(value, str):
            headers[f"mcp-param-{name.lower()}"] = header_value(value)
    return headers
