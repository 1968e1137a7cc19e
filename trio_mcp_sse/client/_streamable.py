"""The client half of Streamable HTTP (protocol revisions 2025-03-26 to 2026-07-28).

Theory of operation
-------------------
Every message the client sends is a ``POST`` to the one MCP endpoint.  The
server accepts a notification or a response with ``202``; it answers a request
either with one ``application/json`` body or with a ``text/event-stream`` that
carries related notifications and server->client requests, then the response.
:func:`connect_streamable_http` owns a nursery for the lifetime of its
``async with`` block, and every stream is read by a task in it:

* :meth:`StreamableHTTPConnection.send` POSTs.  For a request (other than
  ``initialize``) it returns as soon as the request body has been written --
  the server has the request, so a caller cancelled from then on can tell it
  ``notifications/cancelled`` -- and a task of the nursery waits for the answer
  and reads it.  Notifications, responses and ``initialize`` wait for the
  server's status, so a refused one raises to the caller.
* ``initialize``'s answer carries the ``Mcp-Session-Id`` (sent on every later
  request) and, in its result, the negotiated protocol version (sent as
  ``MCP-Protocol-Version``).  Once ``notifications/initialized`` is accepted the
  standalone ``GET`` stream is opened for messages unrelated to any request;
  ``405`` means the server has none.
* Resumability: each stream remembers the last event id and the server's
  ``retry``.  A request's stream that ends or breaks before the response is
  resumed with ``GET`` + ``Last-Event-ID`` after ``retry`` milliseconds, a
  bounded number of consecutive times; the standalone stream is reopened the
  same way.

Failures, by what they mean for the caller:

* the request never reached the server (unreachable, no progress within
  ``timeout``): :meth:`send` raises; only that request fails;
* the server answered the request with something that is not a JSON-RPC answer
  (an HTTP error status, ``202``, an unknown content type, invalid JSON): that
  request alone fails, with an :class:`~trio_mcp_sse.MCPError` saying what came
  back (or the JSON-RPC error the body carried);
* the answer was lost (a stream that cannot be resumed, nothing received for
  ``read_timeout``, an event over ``max_event_size``) or the session is gone
  (``404`` to a request carrying the session id: :class:`SessionExpiredError`):
  the connection fails.  The body of the ``async with`` is cancelled, so every
  pending request stops waiting, and the typed error comes out of the block.

Leaving the block cancels the readers and ``DELETE``\\ s the session
(shielded, bounded; ``405`` means the server does not allow it).

The modern era (2026-07-28) is told apart per message, by the protocol
version in a request's ``params._meta`` (see :mod:`._eras`): such a POST also
carries ``MCP-Protocol-Version``, ``Mcp-Method`` and ``Mcp-Name`` from its
body; it has no session, so no session id, no standalone stream and no
``DELETE``; its stream is not resumable, so one that ends before the response
fails that request alone; and closing it is the cancellation, so
``notifications/cancelled`` is not POSTed.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any, Final, cast

import httpx
import orjson
import trio

from .._jsonrpc import (
    INTERNAL_ERROR,
    INVALID_REQUEST,
    PARSE_ERROR,
    InvalidMessage,
    JSONRPCError,
    JSONRPCMessage,
    JSONRPCResponse,
    RequestId,
    error_response,
    parse_message,
)
from .._sse import DEFAULT_MAX_EVENT_SIZE, SSEDecoder
from ._eras import mirrored_headers, param_header_paths, param_headers
from ._errors import (
    ConnectError,
    ConnectionClosedError,
    OAuthError,
    PostError,
    ProtocolError,
    ReadTimeoutError,
    SessionExpiredError,
)
from ._transport import (
    INCOMING_BUFFER,
    AuthArgument,
    OutgoingMessage,
    _close_response,
    _describe,
    _detail,
    _encode,
    _media_type,
    _reason,
    check_bounds,
    own_http_client,
)
from ._util import raise_collapsed

__all__ = ["StreamableHTTPConnection", "connect_streamable_http"]

log = logging.getLogger("trio_mcp_sse.client")

DEFAULT_RETRY: Final = 1.0
"""Seconds before reconnecting a stream when the server sent no ``retry`` field."""
DEFAULT_RECONNECT_ATTEMPTS: Final = 3
_CLOSE_TIMEOUT: Final = 2.0
_POST_ACCEPT: Final = "application/json, text/event-stream"


def _check_url(url: str) -> None:
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, ValueError, TypeError) as error:
        raise ValueError(f"not a valid URL: {url!r} ({error})") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ValueError(
            f"the MCP endpoint URL must be an absolute http:// or https:// URL, got {url!r}"
        )


def _visible_ascii(value: str) -> bool:
    # Session ids are visible ASCII only (0x21-0x7E) by the spec: anything else
    # could smuggle header syntax into every later request.
    return bool(value) and all("\x21" <= char <= "\x7e" for char in value)


class _SentBody(httpx.AsyncByteStream):
    """A request body that says when it has been handed to the network.

    The transport iterates it while writing the request; asking for the chunk
    after the only one means that one was written.  Works with any httpx
    transport, and may be iterated again (an auth flow resending the request).
    """

    def __init__(self, body: bytes, on_sent: Callable[[], None]) -> None:
        self._body = body
        self._on_sent = on_sent

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield self._body
        self._on_sent()

    async def aclose(self) -> None:
        pass


class _StreamCursor:
    """Where a stream was: what a reconnection must send, and when."""

    __slots__ = ("events", "last_event_id", "retry_ms")

    def __init__(self) -> None:
        self.last_event_id: str | None = None
        self.retry_ms: int | None = None
        self.events = 0
        """Events received so far: a reconnection that brought any was not a failure."""

    def delay(self, ceiling: float) -> float:
        """Seconds to wait before reconnecting: the server's ``retry``, at most ``ceiling``."""
        return min(DEFAULT_RETRY if self.retry_ms is None else self.retry_ms / 1000, ceiling)


class StreamableHTTPConnection:
    """An open Streamable HTTP connection (yielded by :func:`connect_streamable_http`).

    :attr:`incoming` yields every message the server sends, whichever stream
    carried it; :meth:`send` delivers one message.  That is the
    :class:`~trio_mcp_sse.client.ClientTransport` a :class:`ClientSession` needs.
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
        max_event_size: int,
        reconnect_attempts: int,
        standalone_stream: bool,
    ) -> None:
        self.url = url
        """The MCP endpoint, as given."""
        self.session_id: str | None = None
        """The ``Mcp-Session-Id`` the server assigned in its answer to ``initialize``."""
        self.protocol_version: str | None = None
        """The version from the ``initialize`` result, sent as ``MCP-Protocol-Version``."""
        self._client = client
        self._headers = dict(headers)
        self._auth: dict[str, Any] = {} if auth is None else {"auth": auth}
        self._timeout = timeout
        self._read_timeout = read_timeout
        self._max_event_size = max_event_size
        self._reconnect_attempts = reconnect_attempts
        self._standalone_stream = standalone_stream
        self._nursery: trio.Nursery | None = None
        self._closed = False
        self._failure: BaseException | None = None
        self._initialize_id: RequestId | None = None
        self._standalone_started = False
        # Requests whose answer has not arrived, with the scope of the task
        # reading it: notifications/cancelled for one ends that task.
        self._awaiting: dict[RequestId, trio.CancelScope] = {}
        # Requests sent in the modern era whose answer has not arrived: not
        # resumable, and cancelled by closing their stream.
        self._modern: set[RequestId] = set()
        # x-mcp-header annotations of the tools the server listed, by tool name:
        # a modern tools/call mirrors those arguments in Mcp-Param-* headers.
        self._tool_listings: set[RequestId] = set()
        self._param_paths: dict[str, dict[str, tuple[str, ...]]] = {}
        self._incoming_send, self.incoming = trio.open_memory_channel[JSONRPCMessage](
            INCOMING_BUFFER
        )

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<StreamableHTTPConnection {self.url} {state}>"

    @property
    def closed(self) -> bool:
        """True once the connection failed or its block was left."""
        return self._closed

    # -- failing ------------------------------------------------------------------------
    def _fail(self, error: BaseException) -> None:
        """End the connection with ``error``: it comes out of the ``async with`` block."""
        if self._failure is None and not self._closed:
            self._failure = error
            log.debug("%s: connection failed: %s", self.url, error)
        self._closed = True
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()

    def _closed_error(self) -> BaseException:
        return self._failure or ConnectionClosedError("the connection is closed")

    def _expired(self, what: str) -> SessionExpiredError:
        assert self.session_id is not None
        return SessionExpiredError(
            f"{what} {self.url} answered 404: the server no longer knows session "
            f"{self.session_id} (expired, deleted or server restarted); open a new connection",
            session_id=self.session_id,
        )

    # -- headers ------------------------------------------------------------------------
    def _request_headers(self, accept: str) -> dict[str, str]:
        headers = {**self._headers, "accept": accept}
        if self.session_id is not None:
            headers["mcp-session-id"] = self.session_id
        if self.protocol_version is not None:
            headers["mcp-protocol-version"] = self.protocol_version
        return headers

    # -- sending ------------------------------------------------------------------------
    async def send(self, message: OutgoingMessage) -> None:
        """POST one message.

        Returns once the server has it: for a request, once its body is
        written (its answer arrives on :attr:`incoming`); for anything else,
        once the server accepted it.  Raises :class:`PostError` (or
        :class:`ConnectError`) when it could not be delivered, leaving the
        connection up, and :class:`ConnectionClosedError` (or the error that
        ended the connection) once it is closed.
        """
        await trio.lowlevel.checkpoint()
        if self._closed or self._nursery is None:
            raise self._closed_error()
        body = _encode(message)
        method, request_id, params = _classify(body)
        if method == "notifications/cancelled" and isinstance(params, dict):
            cancelled = params.get("requestId")
            modern = isinstance(cancelled, str | int) and cancelled in self._modern
            self._abandon(cancelled)
            if modern:
                return  # 2026-07-28: closing the request's stream was the cancellation
        if method is not None and request_id is not None and method != "initialize":
            mirrored = mirrored_headers(method, params)
            if mirrored:
                self._modern.add(request_id)
                if method == "tools/list":
                    self._tool_listings.add(request_id)
                elif method == "tools/call" and isinstance(params, dict):
                    paths = self._param_paths.get(str(params.get("name")), {})
                    mirrored.update(param_headers(paths, params.get("arguments")))
            try:
                await self._send_request(body, request_id, mirrored)
            except BaseException:
                self._modern.discard(request_id)
                raise
            return
        if method == "initialize" and request_id is not None:
            self._initialize_id = request_id
        response = await self._post_for_status(body)
        try:
            if method == "initialize" and request_id is not None:
                # Registered like any request, so a broken stream is resumed.
                self._awaiting[request_id] = trio.CancelScope()
                try:
                    self._remember_session(response)
                    await self._read_answer(response, request_id, _StreamCursor())
                finally:
                    self._awaiting.pop(request_id, None)
        finally:
            await _close_response(response)
        if method == "notifications/initialized":
            self._open_standalone_stream()

    def _abandon(self, request_id: Any) -> None:
        """Stop waiting for the answer to a request the caller cancelled.

        Handshake era: its stream is still read until the server ends it (for
        at most ``timeout``, and never resumed): the server withdraws the
        requests it made while serving the cancelled one
        (``notifications/cancelled``) on that very stream, and a handler the
        client runs for one of them must hear it.  2026-07-28: closing the
        stream *is* the cancellation, so it is closed at once.
        """
        if isinstance(request_id, str | int):
            modern = request_id in self._modern
            self._modern.discard(request_id)
            scope = self._awaiting.pop(request_id, None)
            if scope is not None:
                if modern:
                    scope.cancel()
                else:
                    scope.deadline = min(scope.deadline, trio.current_time() + self._timeout)

    async def _post_for_status(self, body: bytes) -> httpx.Response:
        """POST and wait (at most ``timeout``) for a success status; raise typed errors otherwise."""
        request = self._build_post(body, None)
        with trio.move_on_after(self._timeout):
            response = await self._send_http(request, "POST")
            if response.is_success:
                return response
            try:
                raise await self._refusal(response)
            finally:
                await _close_response(response)
        raise PostError(
            f"POST to {self.url} got no answer within {self._timeout:g} s", status_code=None
        )

    async def _refusal(self, response: httpx.Response) -> BaseException:
        """The error for a non-2xx answer to a POST (session expiry ends the connection)."""
        if response.status_code == 404 and self.session_id is not None:
            error = self._expired("POST to")
            self._fail(error)
            return error
        text = await _short_body(response, self._timeout)
        return PostError(
            f"POST to {self.url} answered {response.status_code} {_reason(response)}"
            + (f": {text}" if text else ""),
            status_code=response.status_code,
        )

    def _build_post(
        self,
        body: bytes,
        on_sent: Callable[[], None] | None,
        mirrored: Mapping[str, str] | None = None,
    ) -> httpx.Request:
        headers = self._request_headers(_POST_ACCEPT)
        headers.update(mirrored or {})
        headers["content-type"] = "application/json"
        # An explicit length keeps httpx from chunking the streamed body.
        headers["content-length"] = str(len(body))
        content: Any = body if on_sent is None else _SentBody(body, on_sent)
        timeout = httpx.Timeout(self._timeout, read=self._read_timeout)
        return self._client.build_request(
            "POST", self.url, content=content, headers=headers, timeout=timeout
        )

    async def _send_http(self, request: httpx.Request, what: str) -> httpx.Response:
        try:
            return await self._client.send(
                request, stream=True, follow_redirects=False, **self._auth
            )
        except httpx.ConnectError as error:
            raise ConnectError(f"cannot connect to {self.url}: {_describe(error)}") from error
        except httpx.HTTPError as error:
            raise PostError(
                f"{what} to {self.url} failed: {_describe(error)}", status_code=None
            ) from error

    async def _send_request(
        self, body: bytes, request_id: RequestId, mirrored: Mapping[str, str]
    ) -> None:
        assert self._nursery is not None
        with trio.move_on_after(self._timeout):
            await self._nursery.start(self._run_request, body, request_id, mirrored)
            return
        self._awaiting.pop(request_id, None)
        raise PostError(
            f"POST to {self.url} could not send the request within {self._timeout:g} s",
            status_code=None,
        )

    async def _run_request(
        self,
        body: bytes,
        request_id: RequestId,
        mirrored: Mapping[str, str],
        task_status: trio.TaskStatus[None],
    ) -> None:
        """POST a request; once its body is written, wait for and read its answer.

        Before ``started()`` an error raises to :meth:`send`'s caller; after it
        this task is the only one who can tell, so it answers the request
        itself or fails the connection.
        """
        scope = trio.CancelScope()
        self._awaiting[request_id] = scope
        sent = False
        # Until the body is written the POST budget applies; then waiting for
        # the answer is reading, bounded by read_timeout.
        wait = trio.CancelScope(deadline=trio.current_time() + self._timeout)

        def on_sent() -> None:
            nonlocal sent
            if not sent:
                sent = True
                wait.deadline = trio.current_time() + self._read_timeout
                task_status.started()

        try:
            with scope:
                with wait:
                    try:
                        response = await self._send_http(
                            self._build_post(body, on_sent, mirrored), "POST"
                        )
                    except OAuthError as error:
                        # The server wants a token the OAuth flow could not get: no
                        # request of this connection can succeed.
                        if not sent:
                            raise
                        self._fail(error)
                        return
                    except (PostError, ConnectError) as error:
                        if not sent:
                            raise
                        lost: ConnectionClosedError | ReadTimeoutError
                        if isinstance(error.__cause__, httpx.TimeoutException):
                            lost = ReadTimeoutError(
                                f"no answer from {self.url} to request {request_id!r} "
                                f"within {self._read_timeout:g} s"
                            )
                        else:
                            lost = ConnectionClosedError(
                                f"{error} (waiting for the answer to request {request_id!r})"
                            )
                        self._fail(lost)
                        return
                if wait.cancelled_caught:
                    if not sent:
                        raise PostError(
                            f"POST to {self.url} could not send the request within {self._timeout:g} s",
                            status_code=None,
                        )
                    self._fail(
                        ReadTimeoutError(
                            f"no answer from {self.url} to request {request_id!r} within {self._read_timeout:g} s"
                        )
                    )
                    return
                if not sent:  # answered before the body was written: take it as written
                    sent = True
                    task_status.started()
                try:
                    await self._on_request_answer(response, request_id)
                finally:
                    await _close_response(response)
        finally:
            self._modern.discard(request_id)
            if self._awaiting.get(request_id) is scope:
                del self._awaiting[request_id]

    async def _on_request_answer(self, response: httpx.Response, request_id: RequestId) -> None:
        status = response.status_code
        if status == 404 and self.session_id is not None:
            self._fail(self._expired("POST to"))
            return
        if not response.is_success or status == 202:
            await self._answer_locally(response, request_id)
            return
        await self._read_answer(response, request_id, _StreamCursor())

    async def _answer_locally(self, response: httpx.Response, request_id: RequestId) -> None:
        """Fail one request whose HTTP answer is not a JSON-RPC answer, with an error saying why."""
        status = response.status_code
        text = await _body_text(response, self._timeout)
        code = INVALID_REQUEST if 400 <= status < 500 else INTERNAL_ERROR
        data: Any = {"httpStatus": status}
        if status == 202:
            message = f"the server answered request {request_id!r} with 202 Accepted, so no response will come"
        else:
            message = f"POST to {self.url} answered {status} {_reason(response)}"
            server_error = _json_rpc_error_in(text)
            if server_error is not None:
                # The server's own error, data included: a modern server's
                # refusal (-32022 and its supported versions) is decided on it.
                code, message, server_data = server_error
                if server_data is not None:
                    data = server_data
            elif text:
                message += f": {_detail(text)}"
        # Released before the caller hears of it: its next POST (the era
        # fallback's initialize) must not race this connection's teardown.
        await _close_response(response)
        await self._deliver_local_error(request_id, code, message, data)

    async def _deliver_local_error(
        self, request_id: RequestId, code: int, message: str, data: Any
    ) -> None:
        error = parse_message(error_response(request_id, code, message, data))
        await self._deliver(error)

    # -- answers ------------------------------------------------------------------------
    def _remember_session(self, response: httpx.Response) -> None:
        value = response.headers.get("mcp-session-id")
        if value is None:
            return
        if not _visible_ascii(value):
            raise ProtocolError(
                f"the server at {self.url} sent an invalid Mcp-Session-Id "
                "(it must be visible ASCII characters)"
            )
        self.session_id = value

    async def _read_answer(
        self, response: httpx.Response, request_id: RequestId, cursor: _StreamCursor
    ) -> None:
        """Read a request's answer: one JSON body, or an event stream (resumed if it breaks)."""
        media_type = _media_type(response.headers.get("content-type"))
        if media_type == "application/json":
            await self._read_json(response, request_id)
            return
        if media_type != "text/event-stream":
            shown = response.headers.get("content-type") or "no Content-Type"
            await self._deliver_local_error(
                request_id,
                INTERNAL_ERROR,
                f"the server answered request {request_id!r} with {shown}, "
                "neither application/json nor text/event-stream",
                {"httpStatus": response.status_code},
            )
            return
        if await self._read_events(response, cursor, request_id):
            return
        await self._resume(request_id, cursor)

    async def _read_json(self, response: httpx.Response, request_id: RequestId) -> None:
        body = bytearray()
        chunks = cast(AsyncGenerator[bytes, None], response.aiter_bytes())
        async with contextlib.aclosing(chunks):
            while True:
                with trio.move_on_after(self._read_timeout) as wait:
                    try:
                        chunk = await chunks.__anext__()
                    except StopAsyncIteration:
                        break
                    except httpx.HTTPError as error:
                        self._fail(
                            ConnectionClosedError(
                                f"the answer from {self.url} to request {request_id!r} broke off: {_describe(error)}"
                            )
                        )
                        return
                if wait.cancelled_caught:
                    self._fail(
                        ReadTimeoutError(
                            f"the answer from {self.url} to request {request_id!r} stalled for {self._read_timeout:g} s"
                        )
                    )
                    return
                body += chunk
                if len(body) > self._max_event_size:
                    self._fail(self._too_large("the JSON answer to request " + repr(request_id)))
                    return
        try:
            message = parse_message(bytes(body))
        except InvalidMessage as invalid:
            await self._deliver_local_error(
                request_id,
                PARSE_ERROR,
                f"the server's JSON answer to request {request_id!r} is not a JSON-RPC message: {invalid.message}",
                {"httpStatus": response.status_code},
            )
            return
        await self._deliver(message)

    def _too_large(self, what: str) -> ConnectionClosedError:
        return ConnectionClosedError(
            f"{what} from {self.url} is over max_event_size ({self._max_event_size} bytes)"
        )

    async def _read_events(
        self, response: httpx.Response, cursor: _StreamCursor, request_id: RequestId | None
    ) -> bool:
        """Deliver a stream's messages until it ends; True once ``request_id``'s answer came.

        The end of the stream, a network error, or ``read_timeout`` of silence
        all just end the reading: whether to reconnect is the caller's call.
        """
        decoder = SSEDecoder()
        partial_bytes = 0
        chunks = cast(AsyncGenerator[bytes, None], response.aiter_bytes())
        async with contextlib.aclosing(chunks):
            while True:
                with trio.move_on_after(self._read_timeout) as wait:
                    try:
                        chunk = await chunks.__anext__()
                    except StopAsyncIteration:
                        return False
                    except httpx.HTTPError as error:
                        log.debug("%s: stream broke: %s", self.url, _describe(error))
                        return False
                if wait.cancelled_caught:
                    log.debug("%s: nothing on a stream for %g s", self.url, self._read_timeout)
                    return False
                events = decoder.feed(chunk)
                # Bytes possibly held for the unfinished event: at most this chunk
                # when one just finished, else everything since.  So memory for
                # one event is bounded by max_event_size plus a chunk.
                if not decoder.holds_partial_event:
                    partial_bytes = 0
                elif events:
                    partial_bytes = len(chunk)
                else:
                    partial_bytes += len(chunk)
                for event in events:
                    cursor.events += 1
                    if event.id is not None:
                        cursor.last_event_id = event.id
                    if event.retry is not None:
                        cursor.retry_ms = event.retry
                    if len(event.data) > self._max_event_size:
                        self._fail(self._too_large("an event"))
                        return True
                    if event.event != "message" or not event.data.strip():
                        continue  # a priming event (id only) or one we do not know
                    try:
                        message = parse_message(event.data.encode("utf-8"))
                    except InvalidMessage as invalid:
                        log.warning(
                            "%s: ignoring an invalid message from the server: %s",
                            self.url,
                            invalid.message,
                        )
                        continue
                    await self._deliver(message)
                    if request_id is not None and _answers(message, request_id):
                        return True
                if decoder.retry is not None:
                    cursor.retry_ms = decoder.retry
                if decoder.last_event_id is not None:
                    cursor.last_event_id = decoder.last_event_id
                if partial_bytes > self._max_event_size:
                    self._fail(self._too_large("an event"))
                    return True

    async def _resume(self, request_id: RequestId, cursor: _StreamCursor) -> None:
        """Reconnect a request's stream with ``Last-Event-ID`` until its answer arrives.

        A modern request's stream is not resumable: that request fails alone.
        """
        if request_id in self._modern:
            if request_id in self._awaiting:
                await self._deliver_local_error(
                    request_id,
                    INTERNAL_ERROR,
                    f"the stream from {self.url} for request {request_id!r} ended before its response",
                    None,
                )
            return
        failures = 0
        while request_id in self._awaiting:
            if cursor.last_event_id is None:
                self._fail(
                    ConnectionClosedError(
                        f"the stream from {self.url} for request {request_id!r} ended before its "
                        "response, and the server gave no event id to resume from"
                    )
                )
                return
            if failures >= self._reconnect_attempts:
                self._fail(
                    ConnectionClosedError(
                        f"the stream from {self.url} for request {request_id!r} ended before its "
                        f"response and could not be resumed ({failures} attempts)"
                    )
                )
                return
            await trio.sleep(cursor.delay(self._read_timeout))
            if request_id not in self._awaiting:
                return  # answered on another stream, or abandoned
            seen = cursor.events
            response = await self._open_get(cursor.last_event_id)
            if response is None:
                failures += 1
                continue
            try:
                if await self._read_events(response, cursor, request_id):
                    return
            finally:
                await _close_response(response)
            failures = 0 if cursor.events != seen else failures + 1

    # -- the GET streams ------------------------------------------------------------------
    def _open_standalone_stream(self) -> None:
        if self._standalone_stream and not self._standalone_started and self._nursery is not None:
            self._standalone_started = True
            self._nursery.start_soon(self._run_standalone_stream)

    async def _run_standalone_stream(self) -> None:
        """Listen for messages unrelated to any request; reopen the stream when it ends."""
        cursor = _StreamCursor()
        response = await self._open_get(None, quiet=True)
        if response is None:
            return  # the server offers none (405), or not now
        failures = 0
        while True:
            seen = cursor.events
            try:
                await self._read_events(response, cursor, None)
            finally:
                await _close_response(response)
            failures = 0 if cursor.events != seen else failures + 1
            while True:
                if failures >= self._reconnect_attempts:
                    log.warning(
                        "%s: the standalone event stream could not be reopened (%d attempts); "
                        "messages unrelated to a request will not arrive",
                        self.url,
                        failures,
                    )
                    return
                await trio.sleep(cursor.delay(self._read_timeout))
                reopened = await self._open_get(cursor.last_event_id)
                if reopened is not None:
                    response = reopened
                    break
                failures += 1

    async def _open_get(
        self, last_event_id: str | None, *, quiet: bool = False
    ) -> httpx.Response | None:
        """Open a GET event stream; ``None`` when the server does not give one.

        ``404`` for our session ends the connection (:class:`SessionExpiredError`).
        """
        headers = self._request_headers("text/event-stream")
        headers["cache-control"] = "no-cache"
        if last_event_id is not None:
            headers["last-event-id"] = last_event_id
        timeout = httpx.Timeout(self._timeout, read=self._read_timeout)
        request = self._client.build_request("GET", self.url, headers=headers, timeout=timeout)
        response: httpx.Response | None = None
        with trio.move_on_after(self._timeout):
            try:
                response = await self._client.send(
                    request, stream=True, follow_redirects=False, **self._auth
                )
            except httpx.HTTPError as error:
                log.debug("%s: GET failed: %s", self.url, _describe(error))
                return None
            except OAuthError as error:
                log.warning("%s: GET needs a token the OAuth flow could not get: %s", self.url, error)
                return None
        if response is None:
            log.debug("%s: GET got no answer within %g s", self.url, self._timeout)
            return None
        status = response.status_code
        media_type = _media_type(response.headers.get("content-type"))
        if response.is_success and media_type == "text/event-stream":
            return response
        await _close_response(response)
        if status == 404 and self.session_id is not None:
            self._fail(self._expired("GET"))
            return None
        level = logging.DEBUG if quiet or status == 405 else logging.WARNING
        log.log(
            level,
            "%s: GET answered %s %s (%s): no event stream",
            self.url,
            status,
            _reason(response),
            media_type or "no Content-Type",
        )
        return None

    # -- delivering ---------------------------------------------------------------------
    async def _deliver(self, message: JSONRPCMessage) -> None:
        if isinstance(message, JSONRPCResponse | JSONRPCError):
            if message.id is not None:
                self._awaiting.pop(message.id, None)
                if message.id in self._tool_listings:
                    self._tool_listings.discard(message.id)
                    if isinstance(message, JSONRPCResponse):
                        self._learn_param_headers(message.result)
            if (
                isinstance(message, JSONRPCResponse)
                and message.id is not None
                and message.id == self._initialize_id
            ):
                version = (message.result or {}).get("protocolVersion")
                if isinstance(version, str) and _visible_ascii(version):
                    self.protocol_version = version
        # A consumer that closed its end wants no more messages.
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await self._incoming_send.send(message)

    def _learn_param_headers(self, result: Any) -> None:
        """Remember the valid ``x-mcp-header`` annotations of a ``tools/list`` page."""
        tools = result.get("tools") if isinstance(result, dict) else None
        for tool in tools if isinstance(tools, list) else ():
            if not isinstance(tool, dict) or not isinstance(tool.get("name"), str):
                continue
            try:
                paths = param_header_paths(tool.get("inputSchema"))
            except ValueError:
                continue  # the session leaves such a tool out of the listing
            if paths:
                self._param_paths[tool["name"]] = paths
            else:
                self._param_paths.pop(tool["name"], None)

    # -- closing ------------------------------------------------------------------------
    async def _delete_session(self) -> None:
        """Tell the server the session is over (shielded, bounded; 405 means it does not allow it)."""
        if self.session_id is None or isinstance(self._failure, SessionExpiredError):
            return
        headers = self._request_headers("application/json, text/event-stream")
        with trio.CancelScope(shield=True), trio.move_on_after(min(self._timeout, 5.0)):
            try:
                response = await self._client.request(
                    "DELETE",
                    self.url,
                    headers=headers,
                    timeout=self._timeout,
                    follow_redirects=False,
                    **self._auth,
                )
            except httpx.HTTPError as error:
                log.debug("%s: DELETE of the session failed: %s", self.url, _describe(error))
                return
            if not response.is_success and response.status_code not in (404, 405):
                log.debug(
                    "%s: DELETE of the session answered %s", self.url, response.status_code
                )


def _classify(body: bytes) -> tuple[str | None, RequestId | None, Any]:
    """``(method, id, params)`` of an outgoing message, for routing (``None`` where absent)."""
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None, None, None
    if not isinstance(obj, dict):
        return None, None, None
    method = obj.get("method")
    request_id = obj.get("id")
    return (
        method if isinstance(method, str) else None,
        request_id if isinstance(request_id, str | int) and not isinstance(request_id, bool) else None,
        obj.get("params"),
    )


def _answers(message: JSONRPCMessage, request_id: RequestId) -> bool:
    return isinstance(message, JSONRPCResponse | JSONRPCError) and message.id == request_id


def _json_rpc_error_in(text: str) -> tuple[int, str, Any] | None:
    """The ``(code, message, data)`` of a JSON-RPC error in an HTTP error body, if it is one."""
    try:
        obj = orjson.loads(text)
    except orjson.JSONDecodeError:
        return None
    error = obj.get("error") if isinstance(obj, dict) else None
    if isinstance(error, dict) and isinstance(error.get("code"), int):
        return int(error["code"]), str(error.get("message") or ""), error.get("data")
    return None


async def _short_body(response: httpx.Response, timeout: float) -> str:  # noqa: ASYNC109
    """One bounded line of an error answer, for the message; never waits past ``timeout``."""
    return _detail(await _body_text(response, timeout))


async def _body_text(response: httpx.Response, timeout: float) -> str:  # noqa: ASYNC109
    """At most a few KB of an error answer, as sent; never waits past ``timeout``."""
    data = bytearray()
    with trio.move_on_after(timeout):
        with contextlib.suppress(httpx.HTTPError):
            async for chunk in response.aiter_bytes():
                data += chunk
                if len(data) > 4096:
                    break
    return data[:4096].decode("utf-8", "replace") if data else ""


@asynccontextmanager
async def connect_streamable_http(
    url: str,
    *,
    headers: Mapping[str, str] | None = None,
    auth: AuthArgument = None,
    timeout: float = 10.0,  # noqa: ASYNC109
    read_timeout: float = 300.0,
    max_event_size: int = DEFAULT_MAX_EVENT_SIZE,
    reconnect_attempts: int = DEFAULT_RECONNECT_ATTEMPTS,
    standalone_stream: bool = True,
    http_client: httpx.AsyncClient | None = None,
) -> AsyncIterator[StreamableHTTPConnection]:
    """Connect to the MCP server whose Streamable HTTP endpoint is ``url``.

    Nothing is sent until the first message (``initialize``, from a
    :class:`ClientSession`); see ``docs/client.md`` for every parameter and
    exception.  Leaving the block stops every stream and deletes the session.
    """
    _check_url(url)
    check_bounds(timeout, read_timeout, max_event_size)
    if reconnect_attempts < 0:
        raise ValueError(f"reconnect_attempts must be >= 0, got {reconnect_attempts!r}")
    async with contextlib.AsyncExitStack() as stack:
        connection = StreamableHTTPConnection(
            url,
            client=own_http_client(stack, http_client, timeout, read_timeout),
            headers=headers or {},
            auth=auth,
            timeout=timeout,
            read_timeout=read_timeout,
            max_event_size=max_event_size,
            reconnect_attempts=reconnect_attempts,
            standalone_stream=standalone_stream,
        )
        try:
            try:
                async with trio.open_nursery() as nursery:
                    connection._nursery = nursery
                    try:
                        yield connection
                    finally:
                        connection._closed = True
                        nursery.cancel_scope.cancel()
            except BaseExceptionGroup as group:
                if connection._failure is not None and all(
                    leaf is connection._failure or isinstance(leaf, trio.Cancelled)
                    for leaf in _leaves(group)
                ):
                    raise connection._failure from None
                raise_collapsed(group)
            if connection._failure is not None:
                raise connection._failure
        finally:
            connection._nursery = None
            connection._closed = True
            connection._incoming_send.close()
            await connection._delete_session()


def _leaves(error: BaseException) -> list[BaseException]:
    if isinstance(error, BaseExceptionGroup):
        return [leaf for inner in error.exceptions for leaf in _leaves(inner)]
    return [error]

