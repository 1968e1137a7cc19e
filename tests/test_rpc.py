"""The JSON-RPC peer engine on its own: in-memory hooks, Trio's mock clock, no sockets."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import orjson
import pytest
import trio
import trio.testing

from trio_mcp_sse._errors import MCPError
from trio_mcp_sse._jsonrpc import JSONRPCMessage, JSONRPCRequest, RequestId, parse_message
from trio_mcp_sse._rpc import EARLY_CANCELS_KEPT, Failures, Handler, Peer


class Answered(MCPError):
    pass


class TimedOut(Exception):
    def __init__(self, method: str, timeout: float) -> None:
        super().__init__(method, timeout)
        self.method = method
        self.timeout = timeout


class Closed(Exception):
    pass


class Gone(Exception):
    pass


FAILURES = Failures(answered=Answered, timed_out=TimedOut, closed=Closed, peer_gone=(Gone,))


def message(**fields: Any) -> JSONRPCMessage:
    return parse_message(orjson.dumps({"jsonrpc": "2.0", **fields}))


class Wire:
    """The outgoing hook: records what left, and with which related request id."""

    def __init__(self) -> None:
        self.sent: list[tuple[dict[str, Any], RequestId | None]] = []
        self.finals: list[tuple[RequestId | None, bool]] = []
        """(request id, answered): one per request that ended; False = ended unanswered."""
        self.read = 0
        self.arrived = trio.Event()
        self.fail: Exception | None = None
        self.delay = 0.0

    async def send(self, data: bytes, related_request_id: RequestId | None, final: bool) -> None:
        if self.delay:
            await trio.sleep(self.delay)
        if self.fail is not None:
            raise self.fail
        if final:
            self.finals.append((related_request_id, bool(data)))
            if not data:
                return
        self.sent.append((orjson.loads(data), related_request_id))
        self.arrived.set()
        self.arrived = trio.Event()

    async def next(self) -> tuple[dict[str, Any], RequestId | None]:
        """The next message not read yet, in the order they left."""
        while len(self.sent) <= self.read:
            await self.arrived.wait()
        self.read += 1
        return self.sent[self.read - 1]


class Routes:
    """A side's request routing: ``handlers[method]`` runs as a task; ``inline`` answers at once."""

    def __init__(self) -> None:
        self.handlers: dict[str, Any] = {}
        self.inline: dict[str, Mapping[str, Any]] = {}
        self.notifications: list[str] = []

    def route(self, request: JSONRPCRequest, extra: Any) -> Mapping[str, Any] | Handler:
        if request.method in self.inline:
            return self.inline[request.method]
        handler = self.handlers.get(request.method)
        if handler is None:
            raise MCPError(-32601, f"Method not found: {request.method}")
        return lambda: handler(request)

    async def on_notification(self, notification: Any, extra: Any) -> None:
        self.notifications.append(notification.method)


@asynccontextmanager
async def peer_running(**options: Any) -> AsyncIterator[tuple[Peer, Wire, Routes]]:
    wire = Wire()
    routes = Routes()
    options.setdefault("side", "server")
    peer = Peer(
        wire.send,
        route=routes.route,
        on_notification=routes.on_notification,
        failures=FAILURES,
        logger=logging.getLogger("test.rpc"),
        **options,
    )
    async with trio.open_nursery() as nursery:
        peer.start(nursery)
        yield peer, wire, routes
        nursery.cancel_scope.cancel()
    peer.detach()


# -- requests we send ------------------------------------------------------------------------------
async def test_ids_are_allocated_in_order_and_answers_settle_by_id(autojump_clock: trio.abc.Clock) -> None:
    async with peer_running() as (peer, wire, _):
        results: dict[str, Any] = {}

        async def ask(name: str) -> None:
            results[name] = await peer.request(name, {"n": name}, timeout=10)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(ask, "first")
            first, _ = await wire.next()
            nursery.start_soon(ask, "second")
            second, _ = await wire.next()
            assert (first["id"], second["id"]) == (1, 2)
            assert first == {"jsonrpc": "2.0", "id": 1, "method": "first", "params": {"n": "first"}}
            assert peer.pending.keys() == {1, 2}
            # Answered out of order: each answer settles its own request.
            await peer.dispatch(message(id=2, result={"answer": 2}))
            await peer.dispatch(message(id=1, result={"answer": 1}))
        assert results == {"first": {"answer": 1}, "second": {"answer": 2}}
        assert peer.pending == {}
        assert peer.new_request_id() == 3


async def test_an_error_answer_raises_the_sides_error(autojump_clock: trio.abc.Clock) -> None:
    async with peer_running() as (peer, wire, _):
        async with trio.open_nursery() as nursery:

            async def answer() -> None:
                sent, _ = await wire.next()
                await peer.dispatch(message(id=sent["id"], error={"code": -1, "message": "declined", "data": {"x": 1}}))

            nursery.start_soon(answer)
            with pytest.raises(Answered) as raised:
                await peer.request("sampling/createMessage", timeout=10)
        assert (raised.value.code, raised.value.message, raised.value.data) == (-1, "declined", {"x": 1})


async def test_a_result_that_is_not_an_object_fails_the_request(autojump_clock: trio.abc.Clock) -> None:
    async with peer_running() as (peer, wire, _):
        async with trio.open_nursery() as nursery:

            async def answer() -> None:
                sent, _ = await wire.next()
                # Built without validation, as a lenient transport might hand it over.
                from trio_mcp_sse._jsonrpc import JSONRPCResponse

                await peer.dispatch(JSONRPCResponse.model_construct(jsonrpc="2.0", id=sent["id"], result=[1, 2]))

            nursery.start_soon(answer)
            with pytest.raises(Answered) as raised:
                await peer.request("roots/list", timeout=10)
        assert raised.value.code == -32603
        assert raised.value.message == "the result is not a JSON object"


async def test_a_timeout_raises_and_tells_the_peer_to_stop(autojump_clock: trio.abc.Clock) -> None:
    async with peer_running() as (peer, wire, _):
        start = trio.current_time()
        with pytest.raises(TimedOut) as raised:
            await peer.request("roots/list", timeout=5, related_request_id="call-7")
        assert trio.current_time() - start == pytest.approx(5)
        assert (raised.value.method, raised.value.timeout) == ("roots/list", 5)
        assert wire.sent == [
            ({"jsonrpc": "2.0", "id": 1, "method": "roots/list"}, "call-7"),
            (
                {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 1, "reason": "request timed out"}},
                "call-7",
            ),
        ]
        assert peer.pending == {}
        # A late answer is ignored.
        await peer.dispatch(message(id=1, result={}))


async def test_a_cancelled_caller_tells_the_peer_even_from_a_cancelled_scope(autojump_clock: trio.abc.Clock) -> None:
    async with peer_running(side="client") as (peer, wire, _):
        with trio.move_on_after(1):
            await peer.request("tools/call", timeout=60)
        notices = [sent for sent, _ in wire.sent if sent.get("method") == "notifications/cancelled"]
        assert notices == [
            {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 1, "reason": "cancelled by the client"}}
        ]


async def test_the_cancel_notice_is_bounded(autojump_clock: trio.abc.Clock) -> None:
    async with peer_running() as (peer, wire, _):
        async with trio.open_nursery() as nursery:

            async def ask() -> None:
                with trio.move_on_after(1):
                    await peer.request("tools/call", timeout=60)

            nursery.start_soon(ask)
            await wire.next()
            wire.delay = 100  # the peer stops reading
            start = trio.current_time()
        assert trio.current_time() - start == pytest.approx(1 + 2.0)  # the deadline, then CANCEL_NOTICE_TIMEOUT
        assert len(wire.sent) == 1


async def test_initialize_is_never_cancelled(autojump_clock: trio.abc.Clock) -> None:
    async with peer_running(side="client") as (peer, wire, _):
        with pytest.raises(TimedOut):
            await peer.request("initialize", {}, timeout=3)
        assert [sent["method"] for sent, _ in wire.sent] == ["initialize"]


async def test_a_request_that_could_not_be_sent_raises_that_and_is_not_cancelled(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with peer_running() as (peer, wire, _):
        wire.fail = Gone("no route")
        with pytest.raises(Gone):
            await peer.request("roots/list", timeout=5)
        assert wire.sent == []
        assert peer.pending == {}


async def test_a_send_begun_is_let_finish_when_asked(autojump_clock: trio.abc.Clock) -> None:
    async with peer_running(side="client", let_send_finish=True) as (peer, wire, _):
        wire.delay = 1.5
        with trio.move_on_after(1):
            await peer.request("tools/call", timeout=60)
        # The request went out whole, then the notice that cancels it.
        assert [sent.get("method") for sent, _ in wire.sent] == ["tools/call", "notifications/cancelled"]


async def test_close_fails_every_pending_request_and_refuses_new_ones(autojump_clock: trio.abc.Clock) -> None:
    async with peer_running() as (peer, wire, _):
        failures: list[BaseException] = []

        async def ask() -> None:
            try:
                await peer.request("roots/list", timeout=60)
            except Closed as error:
                failures.append(error)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(ask)
            nursery.start_soon(ask)
            await wire.next()
            await trio.testing.wait_all_tasks_blocked()
            start = trio.current_time()
            peer.close("the session is draining")
        assert trio.current_time() == start  # at once, not at the timeout
        assert [str(error) for error in failures] == ["the session is draining"] * 2
        sent_before = len(wire.sent)
        with pytest.raises(Closed, match="draining"):
            await peer.request("roots/list", timeout=60)
        # Closed: no cancel notices, no new requests.
        assert len(wire.sent) == sent_before == 2


# -- requests we receive ---------------------------------------------------------------------------
async def test_answers_carry_their_request_id_and_so_does_everything_sent_while_serving(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with peer_running() as (peer, wire, routes):

        async def tool(request: JSONRPCRequest) -> dict[str, Any]:
            await peer.notify("notifications/progress", {"progress": 1}, related_request_id=request.id)
            answer = await peer.request("roots/list", timeout=5, related_request_id=request.id)
            return {"roots": answer["roots"]}

        routes.handlers["tools/call"] = tool
        routes.inline["ping"] = {}
        await peer.dispatch(message(id="a", method="tools/call"))
        progress, related = await wire.next()
        assert (progress["method"], related) == ("notifications/progress", "a")
        asked, related = await wire.next()
        assert (asked["method"], related) == ("roots/list", "a")
        await peer.dispatch(message(id=7, method="ping"))
        assert await wire.next() == ({"jsonrpc": "2.0", "id": 7, "result": {}}, 7)
        await peer.dispatch(message(id=asked["id"], result={"roots": []}))
        assert await wire.next() == ({"jsonrpc": "2.0", "id": "a", "result": {"roots": []}}, "a")
        peer.close("done")  # unrelated sends carry None: a notification outside any request
        await peer.notify("notifications/tools/list_changed")
        assert wire.sent[-1][1] is None


async def test_a_cancel_stops_exactly_its_request(autojump_clock: trio.abc.Clock) -> None:
    async with peer_running() as (peer, wire, routes):
        stopped: list[str] = []

        async def slow(request: JSONRPCRequest) -> dict[str, Any]:
            try:
                await trio.sleep(10)
            except trio.Cancelled:
                stopped.append(str(request.id))
                raise
            return {"id": request.id}

        routes.handlers["slow"] = slow
        await peer.dispatch(message(id=1, method="slow"))
        await peer.dispatch(message(id=2, method="slow"))
        await trio.testing.wait_all_tasks_blocked()
        assert peer.in_flight.keys() == {1, 2}
        await peer.dispatch(message(method="notifications/cancelled", params={"requestId": 1}))
        answer, related = await wire.next()
        assert (answer, related) == ({"jsonrpc": "2.0", "id": 2, "result": {"id": 2}}, 2)
        assert stopped == ["1"]
        assert [sent["id"] for sent, _ in wire.sent] == [2]  # the cancelled one sends nothing
        await trio.testing.wait_all_tasks_blocked()
        # ...but says that it ended, so a transport holding a stream for it can end that stream.
        assert sorted(wire.finals, key=str) == [(1, False), (2, True)]
        assert peer.in_flight == {}
        assert routes.notifications == []  # the peer handles cancels itself


async def test_a_cancel_that_overtakes_its_request_is_remembered_boundedly(autojump_clock: trio.abc.Clock) -> None:
    async with peer_running() as (peer, wire, routes):
        started: list[RequestId] = []

        async def work(request: JSONRPCRequest) -> dict[str, Any]:
            started.append(request.id)
            return {}

        routes.handlers["work"] = work
        for request_id in range(EARLY_CANCELS_KEPT + 1):
            await peer.dispatch(message(method="notifications/cancelled", params={"requestId": request_id}))
        for request_id in range(EARLY_CANCELS_KEPT + 1):
            await peer.dispatch(message(id=request_id, method="work"))
        await trio.testing.wait_all_tasks_blocked()
        # The oldest cancel was forgotten; every later one kept its request from starting.
        assert started == [0]
        assert [sent["id"] for sent, _ in wire.sent] == [0]
        assert sorted(wire.finals) == [(0, True)] + [(request_id, False) for request_id in range(1, EARLY_CANCELS_KEPT + 1)]


async def test_errors_map_to_codes_and_a_crash_is_logged_once(
    autojump_clock: trio.abc.Clock, caplog: pytest.LogCaptureFixture
) -> None:
    async with peer_running() as (peer, wire, routes):

        async def refuses(request: JSONRPCRequest) -> dict[str, Any]:
            raise MCPError(-32602, "bad argument", {"field": "x"})

        async def crashes(request: JSONRPCRequest) -> dict[str, Any]:
            raise KeyError("secret detail")

        async def not_an_object(request: JSONRPCRequest) -> Any:
            return [1, 2]

        async def gone(request: JSONRPCRequest) -> dict[str, Any]:
            raise Gone

        routes.handlers.update(refuses=refuses, crashes=crashes, listy=not_an_object, gone=gone)
        with caplog.at_level(logging.ERROR, logger="test.rpc"):
            for index, method in enumerate(["refuses", "crashes", "listy", "gone", "nothing"]):
                await peer.dispatch(message(id=index, method=method))
            await trio.testing.wait_all_tasks_blocked()
        errors = {sent["id"]: sent["error"] for sent, _ in wire.sent}
        assert errors == {
            0: {"code": -32602, "message": "bad argument", "data": {"field": "x"}},
            1: {"code": -32603, "message": "Internal error while handling crashes"},
            2: {"code": -32603, "message": "Internal error while handling listy"},
            4: {"code": -32601, "message": "Method not found: nothing"},
        }
        logged = [record for record in caplog.records if record.name == "test.rpc"]
        assert sorted(record.getMessage() for record in logged) == [
            "server: crashes handler failed",
            "server: listy handler failed",
        ]
        assert all(record.exc_info for record in logged)
        assert "secret detail" not in orjson.dumps(wire.sent).decode()


async def test_duplicate_ids_and_too_many_requests_are_refused(autojump_clock: trio.abc.Clock) -> None:
    async with peer_running(max_in_flight=2) as (peer, wire, routes):

        async def wait(request: JSONRPCRequest) -> dict[str, Any]:
            await trio.sleep_forever()
            raise AssertionError

        routes.handlers["wait"] = wait
        for request_id in (1, 1, 2, 3):
            await peer.dispatch(message(id=request_id, method="wait"))
        assert [(sent["id"], sent["error"]["code"], sent["error"]["message"]) for sent, _ in wire.sent] == [
            (1, -32600, "Request id 1 is already in use"),
            (3, -32000, "Server busy: 2 requests already in flight on this session"),
        ]


async def test_detach_lets_go_of_the_side(autojump_clock: trio.abc.Clock) -> None:
    async with peer_running() as (peer, wire, _):
        pass
    assert peer.closed
    with pytest.raises(Closed):
        await peer.request("ping", timeout=1)
    assert wire.sent == []
