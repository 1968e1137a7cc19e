"""Drive a session handler (an ``MCPServer``, usually) without HTTP.

A :class:`SessionClient` delivers messages the way the POST intake does
(``Session.deliver(Incoming(parse_message(...)))``) and reads the JSON the
server queues on ``session.outgoing``: the server layer's behaviour, with no
transport in between.  Every wait is bounded, so a test expecting a message
that never comes fails instead of hanging (instantly under ``autojump_clock``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any

import orjson
import trio
import trio.testing

from .._access_token import AccessToken
from .._jsonrpc import parse_message
from .._session import Delivery, Incoming, Session, SessionHandler, SessionLimits, SessionManager
from ..server import MCPServer

__all__ = ["SessionClient", "SessionHost", "connected_client", "serve_sessions"]

RECEIVE_TIMEOUT = 10.0


class SessionClient:
    """The client end of one session, speaking raw JSON-RPC dicts.

    Messages the test has not asked for yet wait in ``backlog``, in order, so
    asking for one response never loses a notification that came first.
    """

    def __init__(self, session: Session, access_token: AccessToken | None = None) -> None:
        self.session = session
        self.access_token = access_token
        """Carried by every message sent, as a transport carries the request's verified token
        (what handlers see as ``ctx.access_token``); change it to act as a refreshed token."""
        self.backlog: list[dict[str, Any]] = []
        self._last_id = 0

    # -- sending -------------------------------------------------------------------------------
    async def send(
        self, message: Mapping[str, Any], headers: Mapping[str, str] | None = None
    ) -> Delivery:
        """Deliver any message (``headers`` are what handlers see as the POST's headers)."""
        incoming = Incoming(parse_message(orjson.dumps(message)), headers or {}, self.access_token)
        return await self.session.deliver(incoming)

    async def _send_accepted(
        self, message: Mapping[str, Any], headers: Mapping[str, str] | None = None
    ) -> None:
        delivery = await self.send(message, headers)
        if delivery is not Delivery.ACCEPTED:
            raise AssertionError(f"the session did not accept {message!r}: {delivery}")

    async def request(
        self,
        method: str,
        params: Mapping[str, Any] | None = None,
        *,
        request_id: int | str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> int | str:
        """Send a request (numbered 1, 2, ... unless ``request_id``); return its id."""
        if request_id is None:
            self._last_id += 1
            request_id = self._last_id
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
        if params is not None:
            message["params"] = params
        await self._send_accepted(message, headers)
        return request_id

    async def notify(self, method: str, params: Mapping[str, Any] | None = None) -> None:
        """Send a notification."""
        message: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            message["params"] = params
        await self._send_accepted(message)

    async def respond(self, request_id: int | str, result: Mapping[str, Any]) -> None:
        """Answer a server->client request with a result."""
        await self._send_accepted({"jsonrpc": "2.0", "id": request_id, "result": result})

    async def respond_error(self, request_id: int | str, code: int, message: str) -> None:
        """Answer a server->client request with an error."""
        error = {"jsonrpc": "2.0", "id": request_id, "error": {"code": code, "message": message}}
        await self._send_accepted(error)

    # -- receiving -----------------------------------------------------------------------------
    async def _next(self) -> dict[str, Any]:
        with trio.fail_after(RECEIVE_TIMEOUT):
            item = await self.session.outgoing.receive()
            while not item.data:  # a request ended unanswered, or a keepalive: no message
                item = await self.session.outgoing.receive()
        message: dict[str, Any] = orjson.loads(item.data)
        return message

    async def receive(self) -> dict[str, Any]:
        """The next message the server sent (backlog first)."""
        if self.backlog:
            return self.backlog.pop(0)
        return await self._next()

    async def receive_matching(
        self, predicate: Callable[[dict[str, Any]], bool]
    ) -> dict[str, Any]:
        """The first message satisfying ``predicate``; the others stay in the backlog, in order."""
        for index, message in enumerate(self.backlog):
            if predicate(message):
                return self.backlog.pop(index)
        while True:
            message = await self._next()
            if predicate(message):
                return message
            self.backlog.append(message)

    async def response(self, request_id: int | str) -> dict[str, Any]:
        """The response (result or error) to request ``request_id``."""
        return await self.receive_matching(
            lambda m: m.get("id") == request_id
            and ("result" in m or "error" in m)
            and "method" not in m
        )

    async def notification(self, method: str) -> dict[str, Any]:
        """The next notification named ``method``."""
        return await self.receive_matching(lambda m: m.get("method") == method and "id" not in m)

    async def server_request(self, method: str) -> dict[str, Any]:
        """The next server->client request named ``method``."""
        return await self.receive_matching(lambda m: m.get("method") == method and "id" in m)

    async def call(
        self, method: str, params: Mapping[str, Any] | None = None, **kw: Any
    ) -> dict[str, Any]:
        """Send a request and return its ``result`` (``AssertionError`` on an error)."""
        response = await self.response(await self.request(method, params, **kw))
        if "result" not in response:
            raise AssertionError(f"expected a result, got {response!r}")
        result: dict[str, Any] = response["result"]
        return result

    async def call_error(
        self, method: str, params: Mapping[str, Any] | None = None, **kw: Any
    ) -> dict[str, Any]:
        """Send a request and return its ``error`` (``AssertionError`` on a result)."""
        response = await self.response(await self.request(method, params, **kw))
        if "error" not in response:
            raise AssertionError(f"expected an error, got {response!r}")
        error: dict[str, Any] = response["error"]
        return error

    async def initialize(
        self,
        *,
        version: str = "2025-11-25",
        capabilities: Mapping[str, Any] | None = None,
        client_info: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """The MCP handshake: ``initialize``, then ``notifications/initialized``; returns the result."""
        result = await self.call(
            "initialize",
            {
                "protocolVersion": version,
                "capabilities": dict(capabilities or {}),
                "clientInfo": dict(client_info or {"name": "test-client", "version": "1.0"}),
            },
        )
        await self.notify("notifications/initialized")
        return result

    async def drain(self) -> list[dict[str, Any]]:
        """Everything queued once every task is blocked (backlog included).

        Waits for *all* tasks of the run to block, so use it with in-memory tests only.
        """
        await trio.testing.wait_all_tasks_blocked()
        messages, self.backlog = self.backlog, []
        while True:
            try:
                item = self.session.outgoing.receive_nowait()
            except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
                return messages
            if item.data:
                messages.append(orjson.loads(item.data))


class SessionHost:
    """A running :class:`~trio_mcp_sse.lowlevel.SessionManager`: open sessions as a client would."""

    def __init__(self, manager: SessionManager) -> None:
        self.manager = manager

    async def connect(
        self,
        *,
        principal: str | None = None,
        headers: Mapping[str, str] | None = None,
        access_token: AccessToken | None = None,
    ) -> SessionClient:
        """Open a session (``principal`` is what handlers see as ``ctx.principal``, by default
        ``access_token``'s subject; ``access_token`` goes with every message, see :class:`SessionClient`)."""
        if principal is None and access_token is not None:
            principal = access_token.subject
        session = await self.manager.open_session(principal=principal, headers=headers)
        return SessionClient(session, access_token)

    async def initialized_client(self, *, access_token: AccessToken | None = None, **initialize: Any) -> SessionClient:
        """Open a session and complete the handshake (keywords go to ``initialize``)."""
        client = await self.connect(access_token=access_token)
        await client.initialize(**initialize)
        return client


@asynccontextmanager
async def serve_sessions(
    server: MCPServer | SessionHandler, *, limits: SessionLimits | None = None
) -> AsyncIterator[SessionHost]:
    """Sessions served by ``server``: an ``MCPServer`` (its lifespan entered around them, as an
    app's is: before the first session, exited after the last), or any session handler."""
    if not isinstance(server, MCPServer):
        async with SessionManager(server, limits=limits).run() as manager:
            yield SessionHost(manager)
        return
    async with server.running(), SessionManager(server.run_session, limits=limits).run() as manager:
        yield SessionHost(manager)


@asynccontextmanager
async def connected_client(
    server: MCPServer | SessionHandler, *, access_token: AccessToken | None = None, **initialize: Any
) -> AsyncIterator[SessionClient]:
    """One initialized session on ``server`` (keywords go to ``initialize``; ``access_token``: what
    the session's requests carry, e.g. ``AccessToken("alice", scopes={"notes:write"})``)."""
    async with serve_sessions(server) as host:
        yield await host.initialized_client(access_token=access_token, **initialize)
