"""Drive the server layer without HTTP: a SessionManager, a session, JSON in and out.

``async with serve(server) as host: client = await host.connect()`` gives a
:class:`FakeClient` that delivers messages the way the POST intake does
(``Session.deliver(Incoming(parse_message(...)))``) and reads the JSON bytes
of the items the server queues on ``session.outgoing``.  Every wait is bounded, so a test
that expects a message that never comes fails instead of hanging (instantly
under ``autojump_clock``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any

import orjson
import trio
import trio.testing

from trio_mcp_sse import (
    Delivery,
    Incoming,
    Session,
    SessionHandler,
    SessionLimits,
    SessionManager,
    parse_message,
)
from trio_mcp_sse.server import MCPServer

RECEIVE_TIMEOUT = 10.0


class FakeClient:
    """The client end of one session, speaking raw JSON-RPC dicts."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.backlog: list[dict[str, Any]] = []
        self._last_id = 0

    # -- sending -------------------------------------------------------------------------------
    async def send(self, message: Mapping[str, Any], headers: Mapping[str, str] | None = None) -> Delivery:
        return await self.session.deliver(Incoming(parse_message(orjson.dumps(message)), headers or {}))

    async def request(
        self,
        method: str,
        params: Mapping[str, Any] | None = None,
        *,
        request_id: int | str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> int | str:
        if request_id is None:
            self._last_id += 1
            request_id = self._last_id
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
        if params is not None:
            message["params"] = params
        assert await self.send(message, headers) is Delivery.ACCEPTED
        return request_id

    async def notify(self, method: str, params: Mapping[str, Any] | None = None) -> None:
        message: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            message["params"] = params
        assert await self.send(message) is Delivery.ACCEPTED

    async def respond(self, request_id: int | str, result: Mapping[str, Any]) -> None:
        assert await self.send({"jsonrpc": "2.0", "id": request_id, "result": result}) is Delivery.ACCEPTED

    async def respond_error(self, request_id: int | str, code: int, message: str) -> None:
        error = {"jsonrpc": "2.0", "id": request_id, "error": {"code": code, "message": message}}
        assert await self.send(error) is Delivery.ACCEPTED

    # -- receiving -----------------------------------------------------------------------------
    async def _next(self) -> dict[str, Any]:
        with trio.fail_after(RECEIVE_TIMEOUT):
            item = await self.session.outgoing.receive()
        message: dict[str, Any] = orjson.loads(item.data)
        return message

    async def receive(self) -> dict[str, Any]:
        """The next message the server sent (backlog first)."""
        if self.backlog:
            return self.backlog.pop(0)
        return await self._next()

    async def receive_matching(self, predicate: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
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
        return await self.receive_matching(
            lambda m: m.get("id") == request_id and ("result" in m or "error" in m) and "method" not in m
        )

    async def notification(self, method: str) -> dict[str, Any]:
        return await self.receive_matching(lambda m: m.get("method") == method and "id" not in m)

    async def server_request(self, method: str) -> dict[str, Any]:
        return await self.receive_matching(lambda m: m.get("method") == method and "id" in m)

    async def call(self, method: str, params: Mapping[str, Any] | None = None, **kw: Any) -> dict[str, Any]:
        """Send a request and return its ``result`` (failing the test on an error)."""
        response = await self.response(await self.request(method, params, **kw))
        assert "result" in response, response
        result: dict[str, Any] = response["result"]
        return result

    async def call_error(self, method: str, params: Mapping[str, Any] | None = None, **kw: Any) -> dict[str, Any]:
        """Send a request and return its ``error`` (failing the test on a result)."""
        response = await self.response(await self.request(method, params, **kw))
        assert "error" in response, response
        error: dict[str, Any] = response["error"]
        return error

    async def initialize(
        self,
        *,
        version: str = "2025-11-25",
        capabilities: Mapping[str, Any] | None = None,
        client_info: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
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
        """Everything queued once the server has nothing left to do (backlog included)."""
        await trio.testing.wait_all_tasks_blocked()
        messages, self.backlog = self.backlog, []
        while True:
            try:
                item = self.session.outgoing.receive_nowait()
            except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
                return messages
            messages.append(orjson.loads(item.data))


class Host:
    """A running SessionManager whose sessions are served by an MCPServer."""

    def __init__(self, manager: SessionManager) -> None:
        self.manager = manager

    async def connect(
        self, *, principal: str | None = None, headers: Mapping[str, str] | None = None
    ) -> FakeClient:
        session = await self.manager.open_session(principal=principal, headers=headers)
        return FakeClient(session)

    async def initialized_client(self, **kw: Any) -> FakeClient:
        client = await self.connect()
        await client.initialize(**kw)
        return client


@asynccontextmanager
async def serve(server: MCPServer | SessionHandler, *, limits: SessionLimits | None = None) -> AsyncIterator[Host]:
    """Sessions served by ``server`` (an MCPServer, or any session handler)."""
    handler = server.run_session if isinstance(server, MCPServer) else server
    manager = SessionManager(handler, limits=limits)
    async with manager.run():
        yield Host(manager)


@asynccontextmanager
async def connected(server: MCPServer, **initialize: Any) -> AsyncIterator[FakeClient]:
    """One initialized session on ``server``."""
    async with serve(server) as host:
        yield await host.initialized_client(**initialize)


def conforms(method: str, result: Mapping[str, Any], version: str = "2025-11-25") -> None:
    """Fail unless ``result`` is a valid result of ``method`` at ``version`` per the official wire types."""
    from mcp_types.methods import parse_server_result

    parse_server_result(method, version, result)
