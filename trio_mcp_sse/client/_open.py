"""``open_session``: connect, choosing the transport from the URL's answer, and initialize.

A user has one URL and may not know which transport the server speaks.  The
specification's backwards-compatibility rule decides: ``POST`` an
``initialize`` to the URL (Streamable HTTP); if that fails with ``400``,
``404`` or ``405``, the server is an older one, so ``GET`` the URL as an
HTTP+SSE event stream instead.  A URL whose path ends in ``/sse`` is taken to
be an HTTP+SSE stream right away, which saves a round trip to the servers that
use that conventional path (ours included).  A ``ws://`` or ``wss://`` URL
names the (non-standard) WebSocket transport, and nothing else is tried.

The protocol era is chosen next, over Streamable HTTP only (HTTP+SSE belongs
to the handshake era): with ``protocol="auto"`` the session asks
``server/discover`` and falls back to ``initialize`` unless the server answers
as a 2026-07-28 server (:meth:`ClientSession.negotiate`).  A handshake-only
Streamable HTTP server costs one extra round trip; an HTTP+SSE server at a URL
that does not end in ``/sse`` costs two.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any, Final, Literal, TypeAlias
from urllib.parse import urlsplit

import httpx

from .._sse import DEFAULT_MAX_EVENT_SIZE
from ._eras import ProtocolChoice, check_protocol_choice
from ._errors import PostError, SSEConnectionError
from ._oauth import OAuth
from ._session import (
    DEFAULT_MAX_INPUT_ROUNDS,
    LATEST_PROTOCOL_VERSION,
    ClientSession,
    ElicitationHandler,
    NotificationHandler,
    RootsHandler,
    SamplingHandler,
)
from ._streamable import connect_streamable_http
from ._transport import AuthArgument, _check_url, connect_sse
from ._websocket import connect_websocket

__all__ = ["TransportChoice", "choose_transport", "open_session"]

TransportChoice: TypeAlias = Literal["auto", "streamable-http", "sse", "websocket"]
"""``"auto"``: decide from the URL and the server's answer; or one transport, no fallback."""
_TRANSPORTS: Final = ("auto", "streamable-http", "sse", "websocket")

FALLBACK_STATUSES: Final = frozenset({400, 404, 405})
"""Answers to the ``initialize`` POST that mean "not a Streamable HTTP endpoint"."""


def choose_transport(url: str, transport: TransportChoice) -> Literal["streamable-http", "sse", "websocket"]:
    """The transport to try first: ``auto`` takes a ``ws(s)://`` URL as WebSocket and a path
    ending in ``/sse`` as HTTP+SSE."""
    if transport != "auto":
        return transport
    if urlsplit(url).scheme in ("ws", "wss"):
        return "websocket"
    path = httpx.URL(url).path.rstrip("/")
    return "sse" if path.endswith("/sse") else "streamable-http"


@asynccontextmanager
async def open_session(
    url: str,
    *,
    transport: TransportChoice = "auto",
    headers: Mapping[str, str] | None = None,
    auth: AuthArgument = None,
    timeout: float = 10.0,  # noqa: ASYNC109 -- connect/POST bound, passed to the transport
    read_timeout: float = 300.0,
    max_event_size: int = DEFAULT_MAX_EVENT_SIZE,
    http_client: httpx.AsyncClient | None = None,
    client_name: str = "trio-mcp-sse",
    client_version: str | None = None,
    protocol: ProtocolChoice = "auto",
    protocol_version: str = LATEST_PROTOCOL_VERSION,
    request_timeout: float = 60.0,
    max_input_rounds: int = DEFAULT_MAX_INPUT_ROUNDS,
    sampling_handler: SamplingHandler | None = None,
    elicitation_handler: ElicitationHandler | None = None,
    roots_handler: RootsHandler | None = None,
    notification_handlers: Mapping[str, NotificationHandler] | None = None,
    extensions: Mapping[str, Mapping[str, Any]] | None = None,
    tasks: bool = False,
) -> AsyncIterator[ClientSession]:
    """Connect to ``url`` (Streamable HTTP, HTTP+SSE or WebSocket), open a :class:`ClientSession`, start it.

    ``transport`` picks the transport (``"auto"``: see the module docstring);
    ``protocol`` the era (``"auto"``: the newest both sides speak;
    ``"handshake"``: ``initialize`` only; ``"2026-07-28"``: that revision only,
    over Streamable HTTP); ``protocol_version`` is what ``initialize`` offers.
    ``max_event_size`` bounds one event (or JSON body, or WebSocket message) from
    the server.  Every other argument is passed on to the transport or the
    session (a WebSocket takes ``headers``, ``timeout`` and ``max_event_size``;
    ``auth`` and ``http_client`` are HTTP's).  ``auth`` may be an
    :class:`~trio_mcp_sse.client.OAuth` provider: when no token for ``url`` is
    stored yet, the user's authorization (if the server asks for one) happens
    first, before any request's timeout starts (:meth:`OAuth.login`).
    """
    if transport not in _TRANSPORTS:
        raise ValueError(f"transport must be one of {', '.join(map(repr, _TRANSPORTS))}, got {transport!r}")
    protocol = check_protocol_choice(protocol)
    over_websocket = transport == "websocket" or (
        transport == "auto" and urlsplit(url).scheme in ("ws", "wss")
    )
    if protocol == "2026-07-28" and (transport == "sse" or over_websocket):
        raise ValueError("protocol '2026-07-28' is spoken over Streamable HTTP, not HTTP+SSE or WebSocket")
    if not over_websocket and transport != "streamable-http":
        _check_url(url)
    session_options: dict[str, Any] = {
        "client_name": client_name,
        "client_version": client_version,
        "protocol": protocol,
        "protocol_version": protocol_version,
        "request_timeout": request_timeout,
        "max_input_rounds": max_input_rounds,
        "sampling_handler": sampling_handler,
        "elicitation_handler": elicitation_handler,
        "roots_handler": roots_handler,
        "notification_handlers": notification_handlers,
        "extensions": extensions,
        "tasks": tasks,
    }
    connection_options: dict[str, Any] = {
        "headers": headers,
        "auth": auth,
        "timeout": timeout,
        "read_timeout": read_timeout,
        "max_event_size": max_event_size,
        "http_client": http_client,
    }
    if over_websocket:
        if auth is not None or http_client is not None:
            raise ValueError(
                "auth and http_client are for HTTP transports: give a WebSocket its token in headers"
            )
        async with connect_websocket(
            url, headers=headers, timeout=timeout, max_message_size=max_event_size
        ) as websocket, ClientSession(websocket, **{**session_options, "protocol": "handshake"}) as ws_session:
            await ws_session.initialize()
            yield ws_session
        return
    if isinstance(auth, OAuth) and auth.login_before_connect:
        # A person may have to authorize: do it before any request's timeout is counting.
        await auth.login(url, http_client=http_client)
    async with contextlib.AsyncExitStack() as stack:
        session: ClientSession | PostError | None = None
        if choose_transport(url, transport) == "streamable-http":
            session = await _enter_streamable(
                stack,
                url,
                fallback=transport == "auto" and protocol != "2026-07-28",
                connection_options=connection_options,
                session_options=session_options,
            )
        if not isinstance(session, ClientSession):
            try:
                connection = await stack.enter_async_context(connect_sse(url, **connection_options))
            except SSEConnectionError as error:
                # The POST's refusal is the other half of the story: keep it in the traceback.
                raise error from session
            # HTTP+SSE is a handshake-era transport: no probe.
            sse_options = {**session_options, "protocol": "handshake"}
            session = await stack.enter_async_context(ClientSession(connection, **sse_options))
            await session.initialize()
        yield session


async def _enter_streamable(
    stack: contextlib.AsyncExitStack,
    url: str,
    *,
    fallback: bool,
    connection_options: dict[str, Any],
    session_options: dict[str, Any],
) -> ClientSession | PostError:
    """A started session over Streamable HTTP, or the refusal that says to fall back.

    On success the connection and the session are handed to ``stack``; on a
    fallback both are closed first, so nothing of the attempt is left open.
    The era probe is an attempt of its own: when the server turns out to be a
    handshake-era one, ``initialize`` starts on a fresh connection, so nothing
    the probe left behind (a connection the server is still finishing with,
    transport state) can affect the session.
    """
    if session_options["protocol"] != "handshake":
        async with contextlib.AsyncExitStack() as attempt:
            connection = await attempt.enter_async_context(
                connect_streamable_http(url, **connection_options)
            )
            session = await attempt.enter_async_context(ClientSession(connection, **session_options))
            if await session._probe_modern(None):
                await stack.enter_async_context(attempt.pop_all())
                return session
        session_options = {**session_options, "protocol": "handshake"}
    async with contextlib.AsyncExitStack() as attempt:
        connection = await attempt.enter_async_context(
            connect_streamable_http(url, **connection_options)
        )
        session = await attempt.enter_async_context(ClientSession(connection, **session_options))
        try:
            await session.initialize()
        except PostError as error:
            if not (fallback and error.status_code in FALLBACK_STATUSES):
                raise
            return error
        await stack.enter_async_context(attempt.pop_all())
        return session
    raise AssertionError("unreachable: the block returns or raises")  # pragma: no cover
