"""The ASGI vocabulary every transport shares, and the one table that maps outcomes to HTTP responses."""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable, Iterator, Mapping, MutableMapping, Sequence
from typing import Any

import orjson

__all__ = [
    "ASGIApp",
    "ClientGone",
    "HeaderView",
    "Outcome",
    "Receive",
    "Scope",
    "Send",
    "header",
    "read_body",
    "route_path",
    "send_outcome",
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
RawHeaders = Sequence[tuple[bytes, bytes]]


class Outcome(enum.Enum):
    """Every answer the transport gives that is not an event stream.

    This table is the single place that decides status codes and reason texts
    (documented in ``docs/security.md``).  Texts are fixed: a request body is
    never echoed.
    """

    OK = (200, "ok")
    ACCEPTED = (202, "Accepted")
    PREFLIGHT = (204, "")
    INVALID_MESSAGE = (400, "Invalid JSON-RPC message")
    MISSING_SESSION_ID = (400, "Missing or malformed session_id query parameter")
    MISSING_SESSION_HEADER = (400, "Missing Mcp-Session-Id header")
    BAD_PROTOCOL_VERSION = (400, "Unsupported MCP-Protocol-Version")
    REQUEST_ID_IN_USE = (400, "Request id is already in use in this session")
    UNKNOWN_EVENT_ID = (400, "Unknown Last-Event-ID")
    SUBPROTOCOL_REQUIRED = (400, "WebSocket subprotocol 'mcp' required")
    UNAUTHORIZED = (401, "Authentication required")
    INVALID_TOKEN = (401, "Invalid or expired token")
    FORBIDDEN_ORIGIN = (403, "Origin not allowed")
    NOT_FOUND = (404, "Not found")
    UNKNOWN_SESSION = (404, "Could not find session")
    METHOD_NOT_ALLOWED = (405, "Method not allowed")
    NOT_ACCEPTABLE = (406, "Accept must list the media types of the response (application/json, text/event-stream)")
    STREAM_CONFLICT = (409, "This session already has a standalone stream")
    BODY_TOO_LARGE = (413, "Request body too large")
    UNSUPPORTED_MEDIA_TYPE = (415, "Content-Type must be application/json")
    MISDIRECTED_HOST = (421, "Host not allowed")
    AUTH_UNAVAILABLE = (503, "Authentication is temporarily unavailable")
    SESSION_BUSY = (503, "Session inbound queue is full; retry later")
    SHUTTING_DOWN = (503, "Server is shutting down")
    TOO_MANY_SESSIONS = (503, "Too many sessions; retry later")

    def __init__(self, status: int, reason: str) -> None:
        self.status = status
        self.reason = reason

    @property
    def label(self) -> str:
        """Name used in metrics and logs."""
        return self.name.lower()


_RETRY_AFTER = {
    Outcome.SESSION_BUSY: b"1",
    Outcome.TOO_MANY_SESSIONS: b"5",
    Outcome.SHUTTING_DOWN: b"5",
    Outcome.AUTH_UNAVAILABLE: b"5",
}


def header(scope: Scope, name: bytes) -> str | None:
    """First value of a request header (``name`` lowercase), decoded as latin-1."""
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


async def send_outcome(
    send: Send,
    outcome: Outcome,
    *,
    allow: bytes = b"",
    detail: str | None = None,
    extra_headers: RawHeaders = (),
    jsonrpc_code: int | None = None,
) -> None:
    """Answer a request with ``outcome``'s status and a short reason.

    The reason is plain text, or with ``jsonrpc_code`` a JSON-RPC error without
    an ``id`` (what Streamable HTTP clients parse out of a refusal).
    """
    text = outcome.reason if detail is None else f"{outcome.reason}: {detail}"
    if jsonrpc_code is None:
        body = text.encode("utf-8")
        content_type = b"text/plain; charset=utf-8"
    else:
        body = orjson.dumps({"jsonrpc": "2.0", "error": {"code": jsonrpc_code, "message": text}})
        content_type = b"application/json"
    headers = [
        (b"content-type", content_type),
        (b"content-length", str(len(body)).encode("ascii")),
        (b"cache-control", b"no-store"),
    ]
    if outcome is Outcome.METHOD_NOT_ALLOWED:
        headers.append((b"allow", allow))
    retry_after = _RETRY_AFTER.get(outcome)
    if retry_after is not None:
        headers.append((b"retry-after", retry_after))
    headers.extend(extra_headers)
    await send({"type": "http.response.start", "status": outcome.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def route_path(scope: Scope) -> str:
    """The request path relative to the mount point (``root_path``)."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and (path == root or path.startswith(root + "/")):
        path = path[len(root) :]
    return path


class ClientGone(Exception):
    """The client disconnected before its request body arrived."""


async def read_body(receive: Receive, limit: int) -> bytes | None:
    """The whole request body, or ``None`` as soon as it exceeds ``limit`` bytes.

    Raises :class:`ClientGone` when the client disconnects first.
    """
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


class HeaderView(Mapping[str, str]):
    """Request headers decoded on first use: most messages never look at them."""

    __slots__ = ("_decoded", "_raw")

    def __init__(self, raw: RawHeaders) -> None:
        self._raw = raw
        self._decoded: dict[str, str] | None = None

    def _dict(self) -> dict[str, str]:
        if self._decoded is None:
            decoded: dict[str, str] = {}
            for key, value in self._raw:
                name = key.decode("latin-1").lower()
                text = value.decode("latin-1")
                decoded[name] = f"{decoded[name]}, {text}" if name in decoded else text
            self._decoded = decoded
        return self._decoded

    def __getitem__(self, key: str) -> str:
        return self._dict()[key.lower()]

    def __iter__(self) -> Iterator[str]:
        return iter(self._dict())

    def __len__(self) -> int:
        return len(self._dict())
