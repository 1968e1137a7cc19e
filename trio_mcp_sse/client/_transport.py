"""The client half of HTTP+SSE: one ``GET`` event stream in, one ``POST`` per message out.

Theory of operation
-------------------
:func:`connect_sse` owns a nursery for the lifetime of its ``async with``
block, with two background tasks:

* the *reader* opens the ``GET``, checks it is an event stream, feeds its
  bytes to a :class:`~trio_mcp_sse._sse.SSEDecoder`, and waits for the
  ``endpoint`` event.  It resolves that URI against the stream's URL and
  refuses another origin; only then does ``connect_sse`` hand the connection to
  the caller.  From there on every ``message`` event is parsed and put into
  :attr:`SSEConnection.incoming`; other event names are ignored.
* the *writer* drains :attr:`SSEConnection.outgoing` and POSTs each message,
  one at a time and in order.

Every wait is bounded: opening the stream and receiving the endpoint share the
``timeout`` budget, each read of the stream waits at most ``read_timeout``
(any bytes count, so keepalive comments keep a quiet session alive), each POST
at most ``timeout``; and the decoder holds at most ``max_event_size``
characters of one event, since a server streaming an endless event would
otherwise grow memory while every read succeeds.  When either task fails -- a
bad response, the stream ending, a timeout, an oversized event, a POST refused
-- it raises; the nursery cancels the body of
the ``async with`` (so nothing inside it keeps waiting for messages that will
never come) and the one exception comes out of the ``async with`` unwrapped.

:meth:`SSEConnection.send` is the other way to send: it POSTs right away and
raises to *its* caller, leaving the connection up.  :class:`ClientSession`
uses it so that a refused POST fails only the request it carried.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import AsyncGenerator, AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager
from typing import Any, Final, TypeAlias, cast
from urllib.parse import parse_qs, urljoin

import httpx
import orjson
import trio

from .._jsonrpc import InvalidMessage, JSONRPCMessage, encode_message, parse_message
from .._sse import DEFAULT_MAX_EVENT_SIZE, ServerSentEvent, SSEDecoder, SSELimitExceeded
from ._errors import (
    ConnectError,
    ConnectionClosedError,
    EndpointError,
    EndpointOriginError,
    EventTooLargeError,
    PostError,
    ReadTimeoutError,
    SSEResponseError,
)
from ._util import raise_collapsed

__all__ = ["OutgoingMessage", "SSEConnection", "connect_sse"]

log = logging.getLogger("trio_mcp_sse.client")

OutgoingMessage: TypeAlias = JSONRPCMessage | Mapping[str, Any] | bytes
"""A message to POST: an ``mcp_types`` JSON-RPC model, a plain mapping, or encoded JSON bytes."""

AuthArgument: TypeAlias = httpx.Auth | tuple[str | bytes, str | bytes] | None

INCOMING_BUFFER: Final = 64
"""Parsed server messages held for a slow consumer before the reader stops reading."""
_CLOSE_TIMEOUT: Final = 2.0
_MAX_DETAIL: Final = 200


def _detail(text: str) -> str:
    """One line, bounded: error messages must stay readable when a server sends a novel."""
    text = " ".join(text.split())
    return text if len(text) <= _MAX_DETAIL else text[: _MAX_DETAIL - 3] + "..."


def _os_reason(error: BaseException, seen: set[int] | None = None) -> str | None:
    """The ``strerror`` of the OS error under an httpx error ("Connection refused").

    httpx's own message for a refused connection says only that every attempt
    failed; the reason is a few causes and an exception group further down.
    """
    seen = set() if seen is None else seen
    if id(error) in seen:
        return None
    seen.add(id(error))
    if isinstance(error, OSError) and (error.errno or error.strerror):
        return os.strerror(error.errno) if error.errno else str(error.strerror)
    inner: list[BaseException] = []
    if isinstance(error, BaseExceptionGroup):
        inner.extend(error.exceptions)
    inner.extend(e for e in (error.__cause__, error.__context__) if e is not None)
    for candidate in inner:
        reason = _os_reason(candidate, seen)
        if reason:
            return reason
    return None


def _describe(error: BaseException) -> str:
    text = str(error) or type(error).__name__
    reason = _os_reason(error)
    if reason and reason.lower() not in text.lower():
        text = f"{text} ({reason})"
    return _detail(text)


def _reason(response: httpx.Response) -> str:
    return response.reason_phrase or httpx.codes.get_reason_phrase(response.status_code) or "error"


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    # httpx lower-cases the host and drops default ports, so
    # http://Example.com:80 and http://example.com compare equal.
    return url.scheme, url.host, url.port


def _encode(message: OutgoingMessage) -> bytes:
    if isinstance(message, bytes):
        return message
    if isinstance(message, Mapping):
        return orjson.dumps(dict(message))
    return encode_message(message)


def _media_type(content_type: str | None) -> str | None:
    if content_type is None:
        return None
    return content_type.partition(";")[0].strip().lower()


async def _close_response(response: httpx.Response) -> None:
    """Close a response even while being cancelled (bounded): it releases the socket."""
    with trio.CancelScope(shield=True), trio.move_on_after(_CLOSE_TIMEOUT):
        await response.aclose()


def check_bounds(timeout: float, read_timeout: float, max_event_size: int) -> None:
    """The bounds every HTTP client transport takes: positive, or a ``ValueError`` naming the one that is not."""
    for name, value in (("timeout", timeout), ("read_timeout", read_timeout), ("max_event_size", max_event_size)):
        if not value > 0:
            raise ValueError(f"{name} must be > 0, got {value!r}")


def own_http_client(
    stack: contextlib.AsyncExitStack, http_client: httpx.AsyncClient | None, timeout: float, read_timeout: float
) -> httpx.AsyncClient:
    """The caller's ``httpx`` client, or one of our own that ``stack`` closes (shielded, bounded)."""
    if http_client is not None:
        return http_client
    # Our own bounds (trio deadlines) are authoritative; httpx's are a backstop.
    client = httpx.AsyncClient(timeout=httpx.Timeout(timeout, read=read_timeout))
    stack.push_async_callback(_close_client, client)
    return client


async def _close_client(client: httpx.AsyncClient) -> None:
    """Close our own client even when leaving by cancellation, so no socket is left to the GC."""
    with trio.CancelScope(shield=True), trio.move_on_after(_CLOSE_TIMEOUT):
        await client.aclose()


class SSEConnection:
    """An open HTTP+SSE connection to an MCP server (yielded by :func:`connect_sse`).

    Like a server-side session it is a pair of channels: :attr:`incoming`
    yields the server's messages, :attr:`outgoing` takes messages to POST.
    ``receive, send = connection`` unpacks exactly that pair.
    """

    def __init__(
        self,
        url: str,
        *,
        client: httpx.AsyncClient,
        headers: Mapping[str, str],
        auth: AuthArgument,
        timeout: float,
        read_timeout: float,
        max_event_size: int = DEFAULT_MAX_EVENT_SIZE,
    ) -> None:
        self.url = url
        """The event stream's URL, as given."""
        self.endpoint: str = ""
        """The absolute URL messages are POSTed to (resolved from the ``endpoint`` event)."""
        self.session_id: str | None = None
        """The ``session_id`` (or ``sessionId``) query parameter of :attr:`endpoint`, if any."""
        self._client = client
        self._headers = dict(headers)
        # No ``auth`` means "whatever the client is configured with", not "none".
        self._auth: dict[str, Any] = {} if auth is None else {"auth": auth}
        self._timeout = timeout
        self._read_timeout = read_timeout
        self._max_event_size = max_event_size
        self._closed = False
        self._incoming_send, self.incoming = trio.open_memory_channel[JSONRPCMessage](
            INCOMING_BUFFER
        )
        self.outgoing, self._outgoing_receive = trio.open_memory_channel[OutgoingMessage](0)

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<SSEConnection {self.url} {state}>"

    def __iter__(self) -> Iterator[Any]:
        """``receive_channel, send_channel = connection``."""
        return iter((self.incoming, self.outgoing))

    @property
    def closed(self) -> bool:
        """True once the event stream ended (for whatever reason) or the block was left."""
        return self._closed

    # -- sending -------------------------------------------------------------------------
    async def send(self, message: OutgoingMessage) -> None:
        """POST one message now and wait (at most ``timeout``) for the server to accept it.

        Raises :class:`PostError` for a non-2xx answer or no answer, and
        :class:`ConnectionClosedError` once the connection is closed.  Unlike a
        failure of the :attr:`outgoing` channel's writer, this does not end the
        connection: the caller decides.
        """
        # Checkpoint first: if the connection just failed, this caller's block
        # is being cancelled, and Cancelled must win over a second error.
        await trio.lowlevel.checkpoint()
        if self._closed:
            raise ConnectionClosedError("the connection is closed")
        body = _encode(message)
        headers = {**self._headers, "content-type": "application/json"}
        with trio.move_on_after(self._timeout):
            try:
                response = await self._client.post(
                    self.endpoint,
                    content=body,
                    headers=headers,
                    timeout=self._timeout,
                    follow_redirects=False,
                    **self._auth,
                )
            except httpx.HTTPError as error:
                raise PostError(
                    f"POST to {self.endpoint} failed: {_describe(error)}", status_code=None
                ) from error
            if not response.is_success:
                text = _detail(response.text) if response.text else ""
                raise PostError(
                    f"POST to {self.endpoint} answered {response.status_code} {_reason(response)}"
                    + (f": {text}" if text else ""),
                    status_code=response.status_code,
                )
            return
        raise PostError(
            f"POST to {self.endpoint} got no answer within {self._timeout:g} s", status_code=None
        )

    async def _run_writer(self) -> None:
        async with self._outgoing_receive:
            async for message in self._outgoing_receive:
                await self.send(message)

    # -- receiving -----------------------------------------------------------------------
    async def _run_reader(
        self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        try:
            deadline = trio.current_time() + self._timeout
            response = await self._open_stream(deadline)
            try:
                await self._read_stream(response, deadline, task_status)
            finally:
                await _close_response(response)
        finally:
            # The incoming channel stays open: closing it here would make a
            # consumer in the caller's block see EndOfChannel *besides* this
            # task's error.  The caller's block is cancelled instead, and the
            # channel closed when it ends.
            self._closed = True

    async def _open_stream(self, deadline: float) -> httpx.Response:
        headers = {"accept": "text/event-stream", "cache-control": "no-cache", **self._headers}
        # An injected client's own read timeout must not cut a quiet stream
        # before read_timeout does.
        timeout = httpx.Timeout(self._timeout, read=self._read_timeout)
        request = self._client.build_request("GET", self.url, headers=headers, timeout=timeout)
        with trio.move_on_at(deadline):
            try:
                response = await self._client.send(
                    request, stream=True, follow_redirects=False, **self._auth
                )
            except httpx.HTTPError as error:
                raise ConnectError(f"cannot connect to {self.url}: {_describe(error)}") from error
            try:
                self._check_stream_response(response)
            except BaseException:
                await _close_response(response)
                raise
            return response
        raise ConnectError(f"no response from {self.url} within {self._timeout:g} s")

    def _check_stream_response(self, response: httpx.Response) -> None:
        status = response.status_code
        content_type = response.headers.get("content-type")
        if not response.is_success:
            message = f"GET {self.url} answered {status} {_reason(response)}"
            if response.is_redirect and "location" in response.headers:
                message += (
                    f" (redirect to {response.headers['location']}; connect to that URL instead)"
                )
            raise SSEResponseError(message, status_code=status, content_type=content_type)
        if _media_type(content_type) != "text/event-stream":
            shown = content_type or "no Content-Type"
            raise SSEResponseError(
                f"GET {self.url} answered {shown}, not an event stream (text/event-stream): "
                "is this the SSE URL of an MCP server?",
                status_code=status,
                content_type=content_type,
            )

    async def _read_stream(
        self, response: httpx.Response, deadline: float, task_status: trio.TaskStatus[None]
    ) -> None:
        # One message is one data line, so a line may be as large as an event.
        decoder = SSEDecoder(max_line_size=self._max_event_size, max_event_size=self._max_event_size)
        chunks = cast(AsyncGenerator[bytes, None], response.aiter_bytes())
        async with contextlib.aclosing(chunks):
            while True:
                # Until the endpoint arrives, the connect budget bounds the wait;
                # afterwards each read gets read_timeout.  Handing messages to a
                # slow consumer below is not a read and is not timed.
                if not self.endpoint:
                    wait = trio.move_on_at(deadline)
                else:
                    wait = trio.move_on_after(self._read_timeout)
                with wait:
                    try:
                        chunk = await chunks.__anext__()
                    except StopAsyncIteration:
                        if not self.endpoint:
                            raise EndpointError(
                                f"the event stream at {self.url} ended before an endpoint event"
                            ) from None
                        raise ConnectionClosedError(
                            f"the server closed the event stream at {self.url}"
                        ) from None
                    except httpx.ReadTimeout as error:
                        raise ReadTimeoutError(
                            f"nothing received on the event stream at {self.url} for {self._read_timeout:g} s"
                        ) from error
                    except httpx.HTTPError as error:
                        raise ConnectionClosedError(
                            f"the event stream at {self.url} broke: {_describe(error)}"
                        ) from error
                if wait.cancelled_caught:
                    if not self.endpoint:
                        raise EndpointError(
                            f"no endpoint event from {self.url} within {self._timeout:g} s: "
                            "is this the SSE URL of an MCP server?"
                        )
                    raise ReadTimeoutError(
                        f"nothing received on the event stream at {self.url} for {self._read_timeout:g} s"
                    )
                try:
                    events = decoder.feed(chunk)
                except SSELimitExceeded as error:
                    raise EventTooLargeError(
                        f"the server at {self.url} sent an event larger than max_event_size "
                        f"({self._max_event_size} characters); connection closed",
                        limit=self._max_event_size,
                    ) from error
                for event in events:
                    await self._on_event(event, task_status)

    async def _on_event(self, event: ServerSentEvent, task_status: trio.TaskStatus[None]) -> None:
        if event.event == "message":
            if not event.data.strip():
                return
            try:
                message = parse_message(event.data.encode("utf-8"))
            except InvalidMessage as invalid:
                log.warning(
                    "%s: ignoring an invalid message from the server: %s", self.url, invalid.message
                )
                return
            # A consumer that closed its end wants no more messages.
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                await self._incoming_send.send(message)
        elif event.event == "endpoint":
            if self.endpoint:
                log.debug("%s: ignoring a repeated endpoint event", self.url)
                return
            self.endpoint, self.session_id = self._resolve_endpoint(event.data)
            task_status.started()
        else:
            log.debug("%s: ignoring an event named %r", self.url, event.event)

    def _resolve_endpoint(self, data: str) -> tuple[str, str | None]:
        text = data.strip()
        if not text:
            raise EndpointError(f"the endpoint event from {self.url} is empty")
        try:
            endpoint = httpx.URL(urljoin(self.url, text))
        except (httpx.InvalidURL, ValueError) as error:
            raise EndpointError(
                f"the endpoint event from {self.url} is not a valid URL: {text!r}"
            ) from error
        if _origin(endpoint) != _origin(httpx.URL(self.url)):
            raise EndpointOriginError(
                f"the server at {self.url} asked for messages to be sent to another origin "
                f"({endpoint}); refusing to follow it",
                endpoint=str(endpoint),
            )
        query = parse_qs(endpoint.query.decode("ascii", "replace"))
        session_ids = query.get("session_id") or query.get("sessionId")
        return str(endpoint), session_ids[0] if session_ids else None


def _check_url(url: str) -> None:
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, ValueError, TypeError) as error:
        raise ValueError(f"not a valid URL: {url!r} ({error})") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ValueError(f"the SSE URL must be an absolute http:// or https:// URL, got {url!r}")


@asynccontextmanager
async def connect_sse(
    url: str,
    *,
    headers: Mapping[str, str] | None = None,
    auth: AuthArgument = None,
    # A default bound on every connect and POST is the point: callers must not
    # have to remember a fail_after for the library to be hang-free.
    timeout: float = 10.0,  # noqa: ASYNC109
    read_timeout: float = 300.0,
    http_client: httpx.AsyncClient | None = None,
    max_event_size: int = DEFAULT_MAX_EVENT_SIZE,
) -> AsyncIterator[SSEConnection]:
    """Open an HTTP+SSE connection to the MCP server whose event stream is at ``url``.

    Returns once the server announced where to POST; see ``docs/client.md``
    for every parameter and exception.  Leaving the block closes the stream
    and stops the background tasks.
    """
    _check_url(url)
    check_bounds(timeout, read_timeout, max_event_size)
    async with contextlib.AsyncExitStack() as stack:
        connection = SSEConnection(
            url,
            client=own_http_client(stack, http_client, timeout, read_timeout),
            headers=headers or {},
            auth=auth,
            timeout=timeout,
            read_timeout=read_timeout,
            max_event_size=max_event_size,
        )
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(connection._run_reader)
                nursery.start_soon(connection._run_writer)
                try:
                    yield connection
                finally:
                    connection._closed = True
                    nursery.cancel_scope.cancel()
        except BaseExceptionGroup as group:
            raise_collapsed(group)
        finally:
            # Only now, with the reader gone: closing the channel under a reader
            # blocked on a full buffer would raise in it instead of cancelling it.
            connection._closed = True
            connection._incoming_send.close()
