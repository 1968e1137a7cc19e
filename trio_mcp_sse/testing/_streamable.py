"""A Streamable HTTP client for tests: the exact requests a client sends, the raw answers back.

It does what a Streamable HTTP client does on the wire -- POST with
``Content-Type`` and ``Accept``, remember the ``Mcp-Session-Id`` that
``initialize`` returned and send it (with ``MCP-Protocol-Version``) on every
later request, open ``GET`` streams, resume with ``Last-Event-ID``, ``DELETE``
-- but hides nothing: every method returns the response or stream itself, so
a test asserts statuses, headers and event framing, not just results.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import orjson
import trio

from .._sse import SSEDecoder
from ._asgi import (
    _WAIT_SECONDS,
    DEFAULT_HEADERS,
    ASGIResponse,
    ASGITestClient,
    EventStream,
    Headers,
)

__all__ = ["ACCEPT_BOTH", "StreamableTestSession", "messages_of", "read_messages"]

ACCEPT_BOTH = "application/json, text/event-stream"
"""The ``Accept`` header of a Streamable HTTP client's POST."""


def messages_of(response: ASGIResponse) -> list[dict[str, Any]]:
    """The JSON-RPC messages of a whole response: its JSON body, or the data of its events.

    Events with empty data (the priming event) carry no message and are left out.
    """
    if not response.body:
        return []
    if response.headers.get("content-type", "").startswith("application/json"):
        return [orjson.loads(response.body)]
    events = SSEDecoder().feed(response.body)
    return [orjson.loads(event.data) for event in events if event.data]


class StreamableTestSession:
    """One Streamable HTTP session as a test drives it, over an :class:`ASGITestClient`.

    ``session_id`` is set by :meth:`initialize` (or by hand); once set, every
    request carries it and ``MCP-Protocol-Version``.  ``headers`` go on every
    request (``Host`` by default).
    """

    def __init__(
        self,
        client: ASGITestClient,
        path: str = "/mcp",
        *,
        headers: Headers = DEFAULT_HEADERS,
        protocol_version: str = "2025-11-25",
    ) -> None:
        self.client = client
        self.path = path
        self.base_headers: Headers = tuple(headers)
        self.protocol_version = protocol_version
        self.session_id: str | None = None
        self._last_id = 0

    def headers(self, *, accept: str | None = None, extra: Headers = ()) -> list[tuple[str, str]]:
        """The headers of the next request: base, session, version, ``Accept``, then ``extra``."""
        headers = list(self.base_headers)
        if self.session_id is not None:
            headers.append(("mcp-session-id", self.session_id))
            headers.append(("mcp-protocol-version", self.protocol_version))
        if accept is not None:
            headers.append(("accept", accept))
        headers.extend(extra)
        return headers

    def next_id(self) -> int:
        """A fresh request id (1, 2, ...)."""
        self._last_id += 1
        return self._last_id

    # -- raw requests -----------------------------------------------------------------------------
    async def post(
        self, message: Mapping[str, Any] | bytes, *, accept: str = ACCEPT_BOTH, headers: Headers = ()
    ) -> ASGIResponse:
        """POST one message (a dict, or raw bytes) and return the whole response once it ends."""
        body = message if isinstance(message, bytes) else orjson.dumps(message)
        extra = (("content-type", "application/json"), *headers)
        with trio.fail_after(_WAIT_SECONDS):
            return await self.client.request(
                "POST", self.path, headers=self.headers(accept=accept, extra=extra), body=body
            )

    @asynccontextmanager
    async def open_post(
        self, message: Mapping[str, Any], *, accept: str = ACCEPT_BOTH, headers: Headers = (), buffer: float = float("inf")
    ) -> AsyncIterator[EventStream]:
        """POST a request and read its answer as it streams; leaving the block disconnects."""
        extra = (("content-type", "application/json"), *headers)
        async with self.client.stream(
            self.path,
            method="POST",
            headers=self.headers(accept=accept, extra=extra),
            body=orjson.dumps(message),
            buffer=buffer,
        ) as stream:
            yield stream

    @asynccontextmanager
    async def open_get(
        self, *, last_event_id: str | None = None, accept: str = "text/event-stream", headers: Headers = ()
    ) -> AsyncIterator[EventStream]:
        """GET the endpoint: the standalone stream, or with ``last_event_id`` a resumed one."""
        extra: list[tuple[str, str]] = list(headers)
        if last_event_id is not None:
            extra.append(("last-event-id", last_event_id))
        async with self.client.stream(self.path, headers=self.headers(accept=accept, extra=extra)) as stream:
            yield stream

    async def delete(self, *, headers: Headers = ()) -> ASGIResponse:
        """DELETE the endpoint: end the session."""
        with trio.fail_after(_WAIT_SECONDS):
            return await self.client.request("DELETE", self.path, headers=self.headers(extra=headers))

    # -- JSON-RPC over it --------------------------------------------------------------------------
    async def request(
        self, method: str, params: Mapping[str, Any] | None = None, *, accept: str = ACCEPT_BOTH
    ) -> dict[str, Any]:
        """Send a request and return its response (result or error); the other messages are skipped.

        The POST must be answered 200 (JSON or an event stream that ends).
        """
        request_id = self.next_id()
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
        if params is not None:
            message["params"] = dict(params)
        response = await self.post(message, accept=accept)
        if response.status != 200:
            raise AssertionError(f"POST {method} answered {response.status}: {response.text}")
        for answer in messages_of(response):
            if answer.get("id") == request_id and "method" not in answer:
                return answer
        raise AssertionError(f"no response to {method} in {response.body!r}")

    async def notify(self, method: str, params: Mapping[str, Any] | None = None) -> None:
        """Send a notification; the transport must answer 202."""
        message: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            message["params"] = dict(params)
        await self._expect_accepted(message)

    async def respond(self, request_id: str | int, result: Mapping[str, Any]) -> None:
        """Answer a server->client request (sampling, elicitation, roots); must be 202."""
        await self._expect_accepted({"jsonrpc": "2.0", "id": request_id, "result": dict(result)})

    async def _expect_accepted(self, message: Mapping[str, Any]) -> None:
        response = await self.post(message)
        if response.status != 202:
            raise AssertionError(f"POST answered {response.status}: {response.text}")

    async def initialize(
        self,
        *,
        version: str | None = None,
        capabilities: Mapping[str, Any] | None = None,
        client_info: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """The handshake: ``initialize`` (its ``Mcp-Session-Id`` kept), then ``notifications/initialized``."""
        version = version or self.protocol_version
        request_id = self.next_id()
        message = {
            "jsonrpc": "2.0",
            "id": request_id,
            "method": "initialize",
            "params": {
                "protocolVersion": version,
                "capabilities": dict(capabilities or {}),
                "clientInfo": dict(client_info or {"name": "test-client", "version": "1.0"}),
            },
        }
        response = await self.post(message)
        answers = [m for m in messages_of(response) if m.get("id") == request_id]
        if response.status != 200 or not answers or "result" not in answers[0]:
            raise AssertionError(f"initialize answered {response.status}: {response.text}")
        session_id = response.headers.get("mcp-session-id")
        if session_id is None:
            raise AssertionError("initialize answered without an Mcp-Session-Id")
        self.session_id = session_id
        result: dict[str, Any] = answers[0]["result"]
        self.protocol_version = str(result.get("protocolVersion", version))
        await self.notify("notifications/initialized")
        return result


async def read_messages(stream: EventStream, count: int) -> list[dict[str, Any]]:
    """The next ``count`` JSON-RPC messages of a stream (empty-data events skipped; bounded wait)."""
    messages: list[dict[str, Any]] = []
    with trio.fail_after(_WAIT_SECONDS):
        while len(messages) < count:
            event = await stream.next_event()
            if event.data:
                messages.append(orjson.loads(event.data))
    return messages
