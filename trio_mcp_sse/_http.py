"""The ASGI vocabulary every transport shares, and the one table that maps outcomes to HTTP responses."""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable, Iterator, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import orjson
import trio

__all__ = [
    "DISCONNECT_NOTICE",
    "ASGIApp",
    "BodyBudget",
    "BodyLimits",
    "ClientGone",
    "DisconnectNotice",
    "HeaderView",
    "Outcome",
    "Receive",
    "Scope",
    "Send",
    "header",
    "peer_of",
    "read_body",
    "route_path",
    "send_accepted",
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
    ACCEPTED = (202, "")  # no body: see send_accepted
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
    INSUFFICIENT_SCOPE = (403, "The access token does not have the scopes this request needs")
    NOT_FOUND = (404, "Not found")
    UNKNOWN_SESSION = (404, "Could not find session")
    METHOD_NOT_ALLOWED = (405, "Method not allowed")
    NOT_ACCEPTABLE = (406, "Accept must list the media types of the response (application/json, text/event-stream)")
    STREAM_CONFLICT = (409, "This session already has a standalone stream")
    BODY_TIMEOUT = (408, "Request body did not arrive in time")
    BODY_TOO_LARGE = (413, "Request body too large")
    UNSUPPORTED_MEDIA_TYPE = (415, "Content-Type must be application/json")
    MISDIRECTED_HOST = (421, "Host not allowed")
    AUTH_UNAVAILABLE = (503, "Authentication is temporarily unavailable")
    SESSION_BUSY = (503, "Session inbound queue is full; retry later")
    SHUTTING_DOWN = (503, "Server is shutting down")
    TOO_MANY_SESSIONS = (503, "Too many sessions; retry later")
    BODIES_BUSY = (503, "Too many request bodies in flight; retry later")
    BROKER_UNAVAILABLE = (503, "Session broker unavailable; retry later")
    WORKER_UNAVAILABLE = (503, "The worker holding this session did not answer; retry later")
    NOT_TRIO = (500, "trio_mcp_sse needs hypercorn's trio worker: run it with --worker-class trio")
    NOT_READY = (503, "Not ready")

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
    Outcome.BODIES_BUSY: b"1",
    Outcome.BROKER_UNAVAILABLE: b"1",
    Outcome.WORKER_UNAVAILABLE: b"1",
}
_CLOSES_CONNECTION: Final = frozenset({Outcome.BODY_TIMEOUT, Outcome.TOO_MANY_SESSIONS, Outcome.SHUTTING_DOWN})
"""Answers after which the connection is closed: after a 408 the rest of the body may never
come; after a 503 at the session cap, an idle kept-alive connection would hold one of the
descriptors the cap exists to save; after a 503 from a draining server, the client's retry
must open a new connection, which among several workers can reach one that is not stopping
(a kept-alive one would bring it back to the same refusal until the process exits)."""


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
    if outcome in _CLOSES_CONNECTION:
        headers.append((b"connection", b"close"))
    headers.extend(extra_headers)
    await send({"type": "http.response.start", "status": outcome.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


_NO_BODY: Final = (b"content-length", b"0")


async def send_accepted(send: Send, extra_headers: RawHeaders = ()) -> None:
    """Answer ``202 Accepted`` with no body: the one way every transport says "queued".

    A 202 is the answer to most POSTs (every notification and response a
    client sends), and its status says everything; an empty body skips a
    content type, a reason text and a body write in the HTTP server, which
    is measurable per call (docs/performance.md).
    """
    await send({"type": "http.response.start", "status": Outcome.ACCEPTED.status, "headers": [_NO_BODY, *extra_headers]})
    await send({"type": "http.response.body", "body": b""})


def peer_of(scope: Scope) -> str | None:
    """The client's address as ``host:port`` (for logs), when the server tells."""
    client = scope.get("client")
    if not client:
        return None
    return f"{client[0]}:{client[1]}"


def route_path(scope: Scope) -> str:
    """The request path relative to the mount point (``root_path``)."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and (path == root or path.startswith(root + "/")):
        path = path[len(root) :]
    return path


DISCONNECT_NOTICE: Final = "trio_mcp_sse.disconnect_notice"
"""The ASGI scope extension (``scope["extensions"]``) under which ``serve``'s HTTP/1.1 layer puts a
:class:`DisconnectNotice` for each request."""


class DisconnectNotice:
    """Tells a request's application that its client left, without the application awaiting ``receive``.

    A response that waits for its next message must also notice a client that
    leaves, which in plain ASGI means awaiting ``receive()`` for
    ``http.disconnect`` at the same time.  One task can do both only by waiting
    in ``receive()`` inside a cancel scope that the message's arrival cancels,
    and a cancel is among the costliest things trio does (close to a tenth of
    the server CPU of a small JSON answer went to it).  A server that knows when a
    connection is lost can instead call the notice, and the response waits on
    its message channel alone: the message wakes it directly, and the rare
    disconnect interrupts that wait.  Servers without it (hypercorn's own
    classes, other ASGI servers) leave the extension out and the cancel-scope
    wait is used.
    """

    __slots__ = ("_watch", "callback", "gone")

    def __init__(self, watch: Callable[[], None] | None = None) -> None:
        self.gone = False
        """The client has left (the connection was lost or its peer closed it)."""
        self.callback: Callable[[], None] | None = None
        """Called once when the client leaves, if set then (the waiting response's interrupt)."""
        self._watch = watch

    def watching(self) -> None:
        """The response is about to wait without ``receive``: the server must now watch the connection.

        A server that reads only when its application asks (``serve``'s does,
        so that an idle stream costs one task) starts reading for the request
        here; it is a no-op when the server already reads on its own.
        """
        watch, self._watch = self._watch, None
        if watch is not None:
            watch()

    def fire(self) -> None:
        """The client left: set :attr:`gone` and run the callback (once; idempotent)."""
        if not self.gone:
            self.gone = True
            callback, self.callback = self.callback, None
            if callback is not None:
                callback()


class ClientGone(Exception):
    """The client disconnected before its request body arrived."""


class BodyBudget:
    """The bytes of request bodies being read right now, across every request of a worker, bounded.

    Each request's limit bounds one body; this bounds them all together, so many
    slow or stalled bodies cannot add up to the worker's memory.  Bytes are
    counted as they arrive (a stalled body that declared a large
    ``Content-Length`` holds only what it sent) and given back when the body
    is complete or abandoned.
    """

    __slots__ = ("in_use", "limit")

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("the body budget must be >= 1 byte")
        self.limit = limit
        self.in_use = 0

    def take(self, size: int) -> bool:
        """Count ``size`` more bytes if they fit; report whether they did."""
        if self.in_use + size > self.limit:
            return False
        self.in_use += size
        return True

    def give_back(self, size: int) -> None:
        self.in_use -= size


@dataclass(frozen=True, slots=True)
class BodyLimits:
    """How much body one request may send, how long it may take, and the worker's shared budget."""

    max_size: int
    timeout: float
    budget: BodyBudget = field(compare=False)


async def read_body(receive: Receive, limits: BodyLimits) -> bytes | Outcome:
    """The whole request body, or the :class:`Outcome` that refuses it.

    The one body reader of every transport.  ``BODY_TOO_LARGE`` as soon as the
    body exceeds ``limits.max_size``; ``BODY_TIMEOUT`` when it has not fully
    arrived within ``limits.timeout`` seconds (a client that declares a body
    and stalls would otherwise hold its connection and its buffer forever; the
    408 answer closes the connection); ``BODIES_BUSY`` when the worker's
    :class:`BodyBudget` has no room for the bytes that arrived.  Raises
    :class:`ClientGone` when the client disconnects first.
    """
    chunks: list[bytes] = []
    size = 0
    budget = limits.budget
    try:
        with trio.move_on_after(limits.timeout):
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    raise ClientGone
                chunk: bytes = message.get("body", b"")
                if size + len(chunk) > limits.max_size:
                    return Outcome.BODY_TOO_LARGE
                if chunk:
                    if not budget.take(len(chunk)):
                        return Outcome.BODIES_BUSY
                    size += len(chunk)
                    chunks.append(chunk)
                if not message.get("more_body", False):
                    return chunks[0] if len(chunks) == 1 else b"".join(chunks)
        return Outcome.BODY_TIMEOUT
    finally:
        budget.give_back(size)


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
