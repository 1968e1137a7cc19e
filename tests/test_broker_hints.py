"""Session ids that name their owner: a forward is one send to the owner's mailbox, no lookup.

With a broker a session id is ``<worker id>.<32 hex digits>`` (as a task id
names its worker); without one it is the 32 hex digits alone, as ever.  What
is checked here, on a :class:`MemoryBroker` (its ``operations`` count every
:class:`Bus` call) and on a real Redis (its ``INFO commandstats``):

* the id's form with a broker and without;
* a request for a session, reaching another worker, is sent to the worker
  its id names: no ``route`` (no ``GET`` in Redis), and the answer is the one
  the owner gives directly, byte for byte;
* an id forged to name another live worker gets that worker's answer for an
  unknown session, byte for byte what a direct unknown-session request gets;
* an id naming this worker for a session it no longer holds is answered here,
  with no broker call at all;
* an id naming a dead worker gets what it always got: ``503`` while the dead
  worker's liveness key lives, then ``404``; one naming no known worker
  ``404``;
* an id without a hint (an older worker's) is still looked up and routed.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import coredis
import httpx
import pytest
import trio

from trio_mcp_sse import RedisBroker
from trio_mcp_sse._broker import MemoryBroker, session_owner
from trio_mcp_sse.testing import open_http_transport

from .test_broker_memory import HEADERS, INIT, echo_call, initialize, make_server

BOUND = 30  # seconds: every test here ends within this
HEX32 = re.compile(r"[0-9a-f]{32}")
ECHO_HI: dict[str, Any] = {"content": [{"type": "text", "text": "hi"}]}


@dataclass
class Worker:
    app: Any
    client: httpx.AsyncClient

    @property
    def link(self) -> Any:
        return self.app.extensions["trio_mcp_sse"].host.link

    @property
    def worker_id(self) -> str:
        worker_id: str = self.link.worker_id
        return worker_id


COUNTING_ACK_DELAY = 30.0
"""Seconds an owner waits before acknowledging apart, in tests that count frames: a call slower than the usual
0.2 s on a busy machine would otherwise add an acknowledgement to the count."""


@asynccontextmanager
async def cluster(broker: Any, count: int = 2, *, counting: bool = False, **app_options: Any) -> AsyncIterator[list[Worker]]:
    async with AsyncExitStack() as stack:
        found = []
        for _ in range(count):
            app = make_server().http_app(broker=broker, **app_options)
            transport = await stack.enter_async_context(open_http_transport(app))
            client = await stack.enter_async_context(httpx.AsyncClient(transport=transport, base_url="http://testserver"))
            worker = Worker(app, client)
            if counting:
                worker.link._ack_delay = COUNTING_ACK_DELAY
            found.append(worker)
        yield found


def seen(response: httpx.Response) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """All a client can see of an answer."""
    return response.status_code, response.headers.raw, response.content


async def sse_endpoint(stack: AsyncExitStack, worker: Worker) -> str:
    """Open an HTTP+SSE stream on ``worker``; the endpoint its first event names."""
    stream = await stack.enter_async_context(worker.client.stream("GET", "/sse"))
    assert stream.status_code == 200
    async for line in stream.aiter_lines():
        if line.startswith("data: "):
            return line.removeprefix("data: ")
    raise AssertionError("no endpoint event")


def delta(broker: MemoryBroker, before: dict[str, int]) -> dict[str, int]:
    """Bus calls since ``before``, the periodic ones (heartbeat, refresh, peers' liveness) left out."""
    return {name: count - before.get(name, 0) for name, count in broker.operations.items() if name in ("route", "send", "post", "claim")
            and count != before.get(name, 0)}  # fmt: skip


# -- the form of the id ---------------------------------------------------------------------------------
async def test_with_a_broker_a_session_id_names_its_owner() -> None:
    with trio.fail_after(BOUND):
        async with cluster(MemoryBroker(), 1) as (worker,), AsyncExitStack() as stack:
            prefix = f"{worker.worker_id}."
            assert re.fullmatch(r"\d+-[0-9a-f]{12}", worker.worker_id)
            streamable = await initialize(worker.client)
            endpoint = await sse_endpoint(stack, worker)
            sse = endpoint.partition("session_id=")[2]
            for session_id in (streamable, sse):
                assert session_id.startswith(prefix)
                assert HEX32.fullmatch(session_id.removeprefix(prefix))
                assert session_owner(session_id) == worker.worker_id
            assert streamable != sse


async def test_without_a_broker_a_session_id_is_32_hex_digits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TRIO_MCP_SSE_BROKER", raising=False)
    with trio.fail_after(BOUND):
        app = make_server().http_app()
        async with (
            open_http_transport(app) as transport,
            httpx.AsyncClient(transport=transport, base_url="http://testserver") as client,
            AsyncExitStack() as stack,
        ):
            streamable = await initialize(client)
            endpoint = await sse_endpoint(stack, Worker(app, client))
            for session_id in (streamable, endpoint.partition("session_id=")[2]):
                assert HEX32.fullmatch(session_id), session_id
                assert session_owner(session_id) is None


# -- forwarding by the hint -------------------------------------------------------------------------------
async def test_a_forward_with_a_hint_makes_no_lookup() -> None:
    broker = MemoryBroker()
    with trio.fail_after(BOUND):
        async with cluster(broker, counting=True, response_mode="json") as (owner, other):
            session_id = await initialize(owner.client)
            headers = {**HEADERS, "mcp-session-id": session_id}
            direct = await owner.client.post("/mcp", json=echo_call(2, "hi"), headers=headers)
            before, frames = dict(broker.operations), broker.frames_delivered
            forwarded = await other.client.post("/mcp", json=echo_call(2, "hi"), headers=headers)
            assert seen(forwarded) == seen(direct)
            assert forwarded.json() == {"jsonrpc": "2.0", "id": 2, "result": ECHO_HI}
            assert delta(broker, before) == {"post": 2}  # the request to the owner, its answer back
            assert broker.frames_delivered - frames == 2
            assert other.link.metrics.forwarded_out == 1 and owner.link.metrics.forwarded_in == 1


async def test_an_sse_post_with_a_hint_makes_no_lookup() -> None:
    broker = MemoryBroker()
    with trio.fail_after(BOUND):
        async with cluster(broker, counting=True) as (owner, other), AsyncExitStack() as stack:
            endpoint = await sse_endpoint(stack, owner)
            init = {**INIT, "params": {**INIT["params"], "protocolVersion": "2025-03-26"}}
            assert (await owner.client.post(endpoint, json=init, headers={"content-type": "application/json"})).status_code == 202
            before = dict(broker.operations)
            response = await other.client.post(endpoint, json={"jsonrpc": "2.0", "id": 5, "method": "ping"},
                                               headers={"content-type": "application/json"})  # fmt: skip
            assert (response.status_code, response.content) == (202, b"")
            assert delta(broker, before) == {"post": 2}


async def test_a_forged_hint_naming_another_live_worker_gets_the_unknown_session_answer() -> None:
    """The named worker checks that it holds the session: an id it never issued is unknown there."""
    broker = MemoryBroker()
    with trio.fail_after(BOUND):
        async with cluster(broker, counting=True) as (first, second):
            await initialize(first.client)
            await initialize(second.client)
            forged = f"{second.worker_id}.{'0' * 32}"
            headers = {**HEADERS, "mcp-session-id": forged}
            direct = await second.client.post("/mcp", json=echo_call(2, "x"), headers=headers)
            before = dict(broker.operations)
            forwarded = await first.client.post("/mcp", json=echo_call(2, "x"), headers=headers)
            assert delta(broker, before) == {"post": 2}  # to the worker the id names; nothing looked up
            assert seen(forwarded) == seen(direct)
            assert forwarded.status_code == 404
            assert forwarded.json()["error"]["message"] == "Could not find session"
            # The same for HTTP+SSE's POST, and for a DELETE.
            url = f"/messages/?session_id={forged}"
            body = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
            sse_direct = await second.client.post(url, json=body, headers={"content-type": "application/json"})
            sse_forwarded = await first.client.post(url, json=body, headers={"content-type": "application/json"})
            assert seen(sse_forwarded) == seen(sse_direct)
            assert (sse_forwarded.status_code, sse_forwarded.text) == (404, "Could not find session")
            delete_direct = await second.client.delete("/mcp", headers=headers)
            delete_forwarded = await first.client.delete("/mcp", headers=headers)
            assert seen(delete_forwarded) == seen(delete_direct)
            assert delete_forwarded.status_code == 404
            assert broker.operations["route"] == before.get("route", 0)


async def test_a_hint_naming_this_worker_for_a_session_it_no_longer_holds_is_answered_here() -> None:
    broker = MemoryBroker()
    with trio.fail_after(BOUND):
        async with cluster(broker, 1) as (worker,):
            session_id = await initialize(worker.client)
            headers = {**HEADERS, "mcp-session-id": session_id}
            assert (await worker.client.delete("/mcp", headers=headers)).status_code == 200
            before = dict(broker.operations)
            gone = await worker.client.post("/mcp", json=echo_call(2, "x"), headers=headers)
            unknown = await worker.client.post("/mcp", json=echo_call(2, "x"), headers={**HEADERS, "mcp-session-id": "0" * 32})
            assert delta(broker, before) == {"route": 1}  # the plain id only
            assert seen(gone) == seen(unknown)
            assert gone.status_code == 404 and gone.json()["error"]["message"] == "Could not find session"


async def test_a_hint_naming_a_dead_worker_gets_503_then_404(autojump_clock: trio.abc.Clock) -> None:
    broker = MemoryBroker()
    async with cluster(broker, 1) as (survivor,):
        async with AsyncExitStack() as doomed_stack:
            app = make_server().http_app(broker=broker)
            transport = await doomed_stack.enter_async_context(open_http_transport(app))
            doomed = await doomed_stack.enter_async_context(httpx.AsyncClient(transport=transport, base_url="http://testserver"))
            session_id = await initialize(doomed)
            dead = app.extensions["trio_mcp_sse"].host.link.worker_id
            assert session_owner(session_id) == dead == broker.owner_of(session_id)
            broker.kill(dead)  # its mailbox closes, as a killed process's connection does
            doomed_stack.push_async_callback(trio.lowlevel.checkpoint)
        headers = {**HEADERS, "mcp-session-id": session_id}
        unknown = await survivor.client.post("/mcp", json=echo_call(2, "x"), headers={**HEADERS, "mcp-session-id": "0" * 32})
        started = trio.current_time()
        answers = []
        while True:
            before = dict(broker.operations)
            response = await survivor.client.post("/mcp", json=echo_call(2, "x"), headers=headers)
            # The hint's mailbox has no reader: the lookup decides (owner's key, its liveness).
            assert delta(broker, before) == {"post": 1, "route": 1}
            answers.append(response.status_code)
            if response.status_code == 404:
                assert seen(response) == seen(unknown)
                break
            assert response.status_code == 503
            assert response.headers["retry-after"] == "1"
            assert response.text == "The worker holding this session did not answer; retry later"
            await trio.sleep(0.5)
        assert answers[0] == 503 and answers[-1] == 404
        assert trio.current_time() - started <= broker.settings.worker_ttl + 1
        assert broker.owner_of(session_id) is None


async def test_a_hint_naming_no_known_worker_is_an_unknown_session() -> None:
    broker = MemoryBroker()
    with trio.fail_after(BOUND):
        async with cluster(broker, 1) as (worker,):
            await initialize(worker.client)
            ghost = {**HEADERS, "mcp-session-id": f"4242-{'a' * 12}.{'1' * 32}"}
            response = await worker.client.post("/mcp", json=echo_call(2, "x"), headers=ghost)
            unknown = await worker.client.post("/mcp", json=echo_call(2, "x"), headers={**HEADERS, "mcp-session-id": "1" * 32})
            assert seen(response) == seen(unknown)
            assert response.status_code == 404


async def test_an_id_without_a_hint_still_routes() -> None:
    """A session opened by a worker that issues plain ids (an older release) is found by its key."""
    broker = MemoryBroker()
    with trio.fail_after(BOUND):
        async with cluster(broker, counting=True, response_mode="json") as (older, other):
            older.link.session_id_prefix = ""
            session_id = await initialize(older.client)
            assert HEX32.fullmatch(session_id) and broker.owner_of(session_id) == older.worker_id
            headers = {**HEADERS, "mcp-session-id": session_id}
            direct = await older.client.post("/mcp", json=echo_call(2, "plain"), headers=headers)
            before, frames = dict(broker.operations), broker.frames_delivered
            forwarded = await other.client.post("/mcp", json=echo_call(2, "plain"), headers=headers)
            assert seen(forwarded) == seen(direct)
            assert forwarded.json()["result"]["content"] == [{"type": "text", "text": "plain"}]
            assert delta(broker, before) == {"route": 1, "post": 1}  # the lookup carries the request
            assert broker.frames_delivered - frames == 2


# -- on Redis: what the commands say ------------------------------------------------------------------------
async def command_calls(redis: coredis.Redis[bytes], *names: str) -> dict[str, int]:
    stats = await redis.info("commandstats")
    found = {}
    for name in names:
        entry = stats.get(f"cmdstat_{name}") or {}
        found[name] = int(entry.get("calls", 0)) if isinstance(entry, dict) else 0
    return found


@pytest.mark.parametrize("plain_ids", [False, True], ids=["hinted", "plain"])
async def test_on_redis_a_hinted_forward_is_one_publish_each_way_and_no_lookup(redis_url: str, plain_ids: bool) -> None:
    """``GET`` is the route script's lookup (no periodic script reads a key): none for a hinted id."""
    calls = 10
    with trio.fail_after(BOUND):
        async with (
            cluster(RedisBroker(redis_url), counting=True, response_mode="json") as (owner, other),
            coredis.Redis.from_url(redis_url, decode_responses=False) as redis,
        ):
            if plain_ids:
                owner.link.session_id_prefix = ""
            session_id = await initialize(owner.client)
            assert session_owner(session_id) == (None if plain_ids else owner.worker_id)
            headers = {**HEADERS, "mcp-session-id": session_id}
            before = await command_calls(redis, "publish", "get")
            for i in range(calls):
                response = await other.client.post("/mcp", json=echo_call(10 + i, f"call {i}"), headers=headers)
                assert response.status_code == 200
                assert response.json()["id"] == 10 + i
                assert response.json()["result"]["content"] == [{"type": "text", "text": f"call {i}"}]
            await trio.sleep(0.5)  # anything sent late is counted too
            after = await command_calls(redis, "publish", "get")
            # (A PUBLISH inside the route script counts as one too.)
            assert after["publish"] - before["publish"] == 2 * calls
            assert after["get"] - before["get"] == (calls if plain_ids else 0)


async def test_on_redis_a_forged_hint_is_the_named_workers_unknown_session(redis_url: str) -> None:
    with trio.fail_after(BOUND):
        async with (
            cluster(RedisBroker(redis_url), counting=True) as (first, second),
            coredis.Redis.from_url(redis_url, decode_responses=False) as redis,
        ):
            await initialize(first.client)
            forged = {**HEADERS, "mcp-session-id": f"{second.worker_id}.{'f' * 32}"}
            direct = await second.client.post("/mcp", json=echo_call(2, "x"), headers=forged)
            before = await command_calls(redis, "publish", "get")
            forwarded = await first.client.post("/mcp", json=echo_call(2, "x"), headers=forged)
            after = await command_calls(redis, "publish", "get")
            assert seen(forwarded) == seen(direct)
            assert forwarded.status_code == 404 and forwarded.json()["error"]["message"] == "Could not find session"
            assert (after["publish"] - before["publish"], after["get"] - before["get"]) == (2, 0)


async def test_on_redis_a_hint_whose_mailbox_nobody_reads_is_looked_up(redis_url: str) -> None:
    """Nobody waits for a forward's ``PUBLISH`` reply; when it says nobody read the mailbox, the lookup decides.

    The id names a worker with no mailbox reader (none ever had that id):
    the broker's 0 is read within moments, the route script finds no owner,
    and the answer is this worker's own for an unknown session.
    """
    with trio.fail_after(BOUND):
        async with (
            cluster(RedisBroker(redis_url), 1) as (worker,),
            coredis.Redis.from_url(redis_url, decode_responses=False) as redis,
        ):
            await initialize(worker.client)
            unknown = await worker.client.post("/mcp", json=echo_call(2, "x"), headers={**HEADERS, "mcp-session-id": "2" * 32})
            ghost = {**HEADERS, "mcp-session-id": f"4242-{'a' * 12}.{'2' * 32}"}
            before = await command_calls(redis, "publish", "get")
            started = trio.current_time()
            response = await worker.client.post("/mcp", json=echo_call(2, "x"), headers=ghost)
            took = trio.current_time() - started
            after = await command_calls(redis, "publish", "get")
            assert seen(response) == seen(unknown)
            assert response.status_code == 404
            assert (after["publish"] - before["publish"], after["get"] - before["get"]) == (1, 1)
            assert took < worker.link.settings.ack_timeout  # told by the reply, not by the owner's silence


async def test_on_redis_a_large_forwarded_call_arrives_whole(redis_url: str) -> None:
    """A request and an answer of hundreds of kilobytes: many reads of the mailbox, one frame each way."""
    text = "0123456789abcdef" * 40_000  # 640 KB
    with trio.fail_after(BOUND):
        async with cluster(RedisBroker(redis_url)) as (owner, other):
            session_id = await initialize(owner.client)
            headers = {**HEADERS, "mcp-session-id": session_id}
            response = await other.client.post("/mcp", json=echo_call(2, text), headers=headers)
            assert response.status_code == 200
            assert text in response.text
            assert other.link.metrics.forwarded_out == 1


# -- how many frames an answer takes ------------------------------------------------------------------------
def sse_data(body: str) -> list[dict[str, Any]]:
    """The JSON messages of an event stream's ``data:`` lines."""
    import json

    return [json.loads(line.removeprefix("data: ")) for line in body.splitlines() if line.startswith("data: {")]


async def test_a_quick_event_stream_answer_goes_back_as_one_frame() -> None:
    """Its headers, the priming event (an id, no data) and the result: held together, one frame."""
    broker = MemoryBroker()
    with trio.fail_after(BOUND):
        async with cluster(broker, counting=True) as (owner, other):
            session_id = await initialize(owner.client)
            headers = {**HEADERS, "mcp-session-id": session_id}
            direct = await owner.client.post("/mcp", json=echo_call(2, "hi"), headers=headers)
            frames = broker.frames_delivered
            forwarded = await other.client.post("/mcp", json=echo_call(2, "hi"), headers=headers)
            assert broker.frames_delivered - frames == 2  # the request, the whole answer
            assert forwarded.headers.raw == direct.headers.raw
            assert forwarded.headers["content-type"].startswith("text/event-stream")
            assert sse_data(forwarded.text) == sse_data(direct.text) == [{"jsonrpc": "2.0", "id": 2, "result": ECHO_HI}]
            assert re.match(r"id: \S+\nretry: \d+\ndata: \n\n", forwarded.text)  # the priming event came too


async def test_a_slow_event_stream_answer_sends_its_start_with_the_acknowledgement(autojump_clock: trio.abc.Clock) -> None:
    """Nothing but the priming event for 10 s: it goes when an acknowledgement would (after 0.2 s), then the result.

    (Within the 15 s after which a keep-alive comment would go, held as long, then sent alone.)
    """
    broker = MemoryBroker()
    async with cluster(broker) as (owner, other):
        session_id = await initialize(owner.client)
        call = {"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "slow", "arguments": {"seconds": 10}}}
        frames = broker.frames_delivered
        response = await other.client.post("/mcp", json=call, headers={**HEADERS, "mcp-session-id": session_id}, timeout=120)
        assert response.status_code == 200
        assert sse_data(response.text) == [{"jsonrpc": "2.0", "id": 3, "result": {"content": [{"type": "text", "text": "slept 10s"}]}}]
        assert broker.frames_delivered - frames == 3  # the request, start and priming event, the result


async def test_progress_events_are_relayed_in_order() -> None:
    broker = MemoryBroker()
    with trio.fail_after(BOUND):
        async with cluster(broker) as (owner, other):
            session_id = await initialize(owner.client)
            call = {"jsonrpc": "2.0", "id": 4, "method": "tools/call",
                    "params": {"name": "count", "arguments": {"n": 3}, "_meta": {"progressToken": "p"}}}  # fmt: skip
            headers = {**HEADERS, "mcp-session-id": session_id}
            direct = await owner.client.post("/mcp", json=call, headers=headers)
            forwarded = await other.client.post("/mcp", json=call, headers=headers)
            assert sse_data(forwarded.text) == sse_data(direct.text)
            assert [m.get("params", {}).get("progress") for m in sse_data(forwarded.text)] == [1, 2, 3, None]


def test_events_without_data_are_told_from_events_with_data() -> None:
    from trio_mcp_sse._broker import _has_event_data

    for quiet in (b"id: a.0\nretry: 1000\ndata: \n\n", b": keepalive\n\n", b"data:\n\n", b"event: x\r\ndata: \r\n\r\n", b""):
        assert not _has_event_data(quiet), quiet
    for loud in (b"id: a.1\ndata: x\n\n", b"data: \ndata: y\n\n", b"data:  \n\n", b"other: field\n\n"):
        assert _has_event_data(loud), loud
