"""Tasks across workers in one process: a task started on worker A, polled, answered and cancelled through B.

Two apps (workers A and B) share one :class:`MemoryBroker`.  With a broker a
task id names the worker holding the task (``<worker id>.<random>``), and a
2026-07-28 ``tasks/get`` / ``tasks/update`` / ``tasks/cancel`` whose
``Mcp-Name`` names another live worker is forwarded to it whole
(docs/scaling.md, "Tasks across workers").  What is checked here:

* every answer B relays is byte for byte (status, headers, body) the answer A
  gives the same request directly, and B counts it as forwarded out, A as in;
* another principal's request through B is told the task does not exist
  (-32602), exactly as on A;
* a task whose worker is gone: ``503`` while that worker's liveness key lives
  (as for a session), then -32602 from the worker the request reached, as for
  an id never issued; an id naming no worker at all is answered locally too;
* a broker that does not answer: ``503`` at once, as for a session.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import trio

from trio_mcp_sse import AccessToken, AuthSettings, Context, MCPServer
from trio_mcp_sse._broker import MemoryBroker, task_id_prefix, task_owner
from trio_mcp_sse.testing import open_http_transport

MODERN = "2026-07-28"
TASKS: dict[str, Any] = {"io.modelcontextprotocol/tasks": {}}
TOKENS = {"alice": AccessToken("alice"), "bob": AccessToken("bob")}
CONFIRM_SCHEMA = {"type": "object", "properties": {"confirm": {"type": "boolean"}}, "required": ["confirm"]}
STAMP = {"io.modelcontextprotocol/serverInfo": {"name": "tasks-broker", "version": "1.0.0"}}
RANDOM_CHARS = 32  # secrets.token_urlsafe(24): 192 bits


def make_server() -> MCPServer:
    server = MCPServer("tasks-broker", "1.0.0")

    @server.tool(task=True)
    async def slow_compute(seconds: float, label: str) -> str:
        await trio.sleep(seconds)
        return f"Computed {label} in {seconds:g} s"

    @server.tool(task=True)
    async def confirm_delete(filename: str, ctx: Context) -> str:
        answer = await ctx.elicit(f"Delete {filename}?", CONFIRM_SCHEMA, key="confirm")
        if answer.action == "accept" and (answer.content or {}).get("confirm") is True:
            return f"Deleted {filename}"
        return f"Kept {filename}"

    return server


async def verify(token: str) -> AccessToken | None:
    return TOKENS.get(token)


@dataclass
class Worker:
    app: Any
    client: httpx.AsyncClient

    @property
    def host(self) -> Any:
        return self.app.extensions["trio_mcp_sse"].host

    @property
    def worker_id(self) -> str:
        link = self.host.link
        assert link is not None
        worker_id: str = link.worker_id
        return worker_id

    @property
    def metrics(self) -> Any:
        return self.host.metrics

    async def post(
        self,
        method: str,
        params: dict[str, Any],
        *,
        token: str = "alice",
        name: str | None = None,
        extra: dict[str, str] | None = None,
    ) -> httpx.Response:
        """One 2026-07-28 request declaring the tasks extension, with its routing headers."""
        capabilities = {"elicitation": {}, "extensions": TASKS}
        meta = {
            "io.modelcontextprotocol/protocolVersion": MODERN,
            "io.modelcontextprotocol/clientCapabilities": capabilities,
            "io.modelcontextprotocol/clientInfo": {"name": "test-client", "version": "1.0"},
        }
        headers = {
            "content-type": "application/json",
            "accept": "application/json, text/event-stream",
            "authorization": f"Bearer {token}",
            "mcp-protocol-version": MODERN,
            "mcp-method": method,
        }
        routed = name if name is not None else params.get("taskId", params.get("name"))
        if routed is not None:
            headers["mcp-name"] = routed
        headers.update(extra or {})
        body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": {**params, "_meta": meta}}
        return await self.client.post("/mcp", content=json.dumps(body).encode(), headers=headers)

    async def start(self, tool: str, arguments: dict[str, Any]) -> str:
        response = await self.post("tools/call", {"name": tool, "arguments": arguments})
        assert response.status_code == 200, response.text
        result = response.json()["result"]
        assert result["resultType"] == "task" and result["status"] == "working", result
        task_id: str = result["taskId"]
        return task_id

    async def get(self, task_id: str, **options: Any) -> httpx.Response:
        return await self.post("tasks/get", {"taskId": task_id}, **options)

    async def until(self, task_id: str, status: str) -> dict[str, Any]:
        """Poll until the task has ``status``; the task as ``tasks/get`` shows it then."""
        with trio.fail_after(5):
            while True:
                response = await self.get(task_id)
                assert response.status_code == 200, response.text
                task: dict[str, Any] = response.json()["result"]
                if task["status"] == status:
                    return task
                await trio.sleep(0.01)


@asynccontextmanager
async def cluster(broker: MemoryBroker, servers: list[MCPServer] | None = None) -> AsyncIterator[tuple[Worker, Worker]]:
    """Workers A and B: the same app twice (or ``servers``' apps), one broker."""
    async with AsyncExitStack() as stack:
        workers = []
        for server in servers or [make_server(), make_server()]:
            app = server.http_app(broker=broker, auth=AuthSettings(verify_token=verify))
            transport = await stack.enter_async_context(open_http_transport(app))
            client = await stack.enter_async_context(httpx.AsyncClient(transport=transport, base_url="http://testserver"))
            workers.append(Worker(app, client))
        a, b = workers
        yield a, b


def identical(first: httpx.Response, second: httpx.Response) -> dict[str, Any]:
    """The same answer, as a client sees it (status, headers, body bytes); its JSON-RPC message."""
    assert (first.status_code, first.headers.raw, first.content) == (second.status_code, second.headers.raw, second.content)
    message: dict[str, Any] = first.json()
    return message


def forwards(worker: Worker) -> tuple[int, int]:
    return worker.metrics.forwarded_out, worker.metrics.forwarded_in


def not_found(task_id: str) -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "id": 1,
        "error": {"code": -32602, "message": f"Task not found: {task_id}", "data": {"taskId": task_id}},
    }


# -- the id ------------------------------------------------------------------------------------------
def test_task_ids_name_their_worker_unambiguously() -> None:
    assert task_id_prefix("4242-0123456789ab") == "4242-0123456789ab."
    assert task_owner("4242-0123456789ab.Zm9v_-x") == "4242-0123456789ab"
    assert task_id_prefix("a.b") == ""  # an id that could not be read back: plain ids
    for plain in (None, "", "no-owner-here", ".random", "owner.", "bad owner.random", "x" * 65 + ".random"):
        assert task_owner(plain) is None, plain


async def test_with_a_broker_a_task_id_is_the_workers_id_then_192_random_bits() -> None:
    async with cluster(MemoryBroker()) as (a, b):
        task_id = await a.start("slow_compute", {"seconds": 3600, "label": "x"})
        owner, dot, random = task_id.partition(".")
        assert (owner, dot) == (a.worker_id, ".")
        assert len(random) == RANDOM_CHARS and "." not in random
        assert task_owner(task_id) == a.worker_id != b.worker_id
        assert task_owner(await b.start("slow_compute", {"seconds": 3600, "label": "y"})) == b.worker_id


async def test_without_a_broker_task_ids_are_plain_random() -> None:
    app = make_server().http_app(auth=AuthSettings(verify_token=verify))
    async with open_http_transport(app) as transport, httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        task_id = await Worker(app, client).start("slow_compute", {"seconds": 3600, "label": "x"})
    assert len(task_id) == RANDOM_CHARS and "." not in task_id


# -- get, update, cancel through another worker -------------------------------------------------------
async def test_a_task_on_a_is_polled_and_answered_through_b_exactly_as_on_a() -> None:
    async with cluster(MemoryBroker()) as (a, b):
        task_id = await a.start("confirm_delete", {"filename": "notes.txt"})
        await a.until(task_id, "input_required")
        before_a, before_b = forwards(a), forwards(b)

        through_b, on_a = await b.get(task_id), await a.get(task_id)
        message = identical(through_b, on_a)
        assert through_b.status_code == 200 and through_b.headers["content-type"] == "application/json"
        task = message["result"]
        assert task["taskId"] == task_id and task["status"] == "input_required"
        assert task["inputRequests"] == {
            "confirm": {"method": "elicitation/create", "params": {"message": "Delete notes.txt?", "requestedSchema": CONFIRM_SCHEMA}}
        }
        assert forwards(b) == (before_b[0] + 1, before_b[1]) and forwards(a) == (before_a[0], before_a[1] + 1)

        # The answer, through B: it reaches the task on A.
        answer = {"taskId": task_id, "inputResponses": {"confirm": {"action": "accept", "content": {"confirm": True}}}}
        updated = await b.post("tasks/update", answer)
        assert updated.status_code == 200, updated.text
        assert updated.json() == {"jsonrpc": "2.0", "id": 1, "result": {"resultType": "complete", "_meta": STAMP}}
        # The same update again is ignored by A, directly or through B, with the same answer.
        assert identical(await b.post("tasks/update", answer), await a.post("tasks/update", answer)) == updated.json()

        done = await b.until(task_id, "completed")
        assert done["result"] == {"content": [{"type": "text", "text": "Deleted notes.txt"}]}
        final = identical(await b.get(task_id), await a.get(task_id))
        assert final["result"] == done
        assert a.metrics.forwarded_in - before_a[1] == b.metrics.forwarded_out - before_b[0] >= 5
        assert a.metrics.forward_failures == {} and b.metrics.forward_failures == {}


async def test_a_task_on_a_is_cancelled_through_b() -> None:
    async with cluster(MemoryBroker()) as (a, b):
        task_id = await a.start("slow_compute", {"seconds": 3600, "label": "never"})
        working = identical(await b.get(task_id), await a.get(task_id))
        assert working["result"]["status"] == "working"
        cancelled = await b.post("tasks/cancel", {"taskId": task_id})
        assert cancelled.status_code == 200, cancelled.text
        assert cancelled.json() == {"jsonrpc": "2.0", "id": 1, "result": {"resultType": "complete", "_meta": STAMP}}
        task = (await a.until(task_id, "cancelled"))
        assert task["statusMessage"] == "The task was cancelled."
        assert identical(await b.get(task_id), await a.get(task_id))["result"] == task
        # Cancelling a finished task again changes nothing, wherever it is asked.
        assert identical(await b.post("tasks/cancel", {"taskId": task_id}), await a.post("tasks/cancel", {"taskId": task_id})) == cancelled.json()
        assert b.metrics.forwarded_out == a.metrics.forwarded_in == 4


async def test_a_base64_mcp_name_is_read_as_the_server_reads_it() -> None:
    async with cluster(MemoryBroker()) as (a, b):
        task_id = await a.start("slow_compute", {"seconds": 3600, "label": "x"})
        encoded = "=?base64?" + base64.b64encode(task_id.encode()).decode() + "?="
        through_b = await b.get(task_id, name=encoded)
        assert through_b.json()["result"]["taskId"] == task_id
        identical(through_b, await a.get(task_id, name=encoded))
        assert b.metrics.forwarded_out == 1
        # A Mcp-Name that is not the body's taskId: forwarded to the worker it names, refused there as here.
        other = await a.start("slow_compute", {"seconds": 3600, "label": "y"})
        mismatch = identical(await b.get(task_id, name=other), await a.get(task_id, name=other))
        assert mismatch["error"]["code"] == -32020
        assert b.metrics.forwarded_out == 2


async def test_another_principal_through_b_is_told_the_task_does_not_exist() -> None:
    async with cluster(MemoryBroker()) as (a, b):
        task_id = await a.start("confirm_delete", {"filename": "secret.txt"})
        for method, params in (
            ("tasks/get", {"taskId": task_id}),
            ("tasks/update", {"taskId": task_id, "inputResponses": {"confirm": {"action": "accept", "content": {"confirm": True}}}}),
            ("tasks/cancel", {"taskId": task_id}),
        ):
            through_b = await b.post(method, params, token="bob")
            assert through_b.status_code == 400
            assert identical(through_b, await a.post(method, params, token="bob")) == not_found(task_id)
        assert b.metrics.forwarded_out == 3
        # Alice's task is untouched: still waiting for her answer.
        assert (await b.get(task_id)).json()["result"]["status"] == "input_required"


async def test_a_task_of_this_worker_is_answered_here() -> None:
    async with cluster(MemoryBroker()) as (a, b):
        task_id = await b.start("slow_compute", {"seconds": 3600, "label": "x"})
        assert (await b.get(task_id)).json()["result"]["status"] == "working"
        assert forwards(a) == forwards(b) == (0, 0)


# -- when the task's worker is not there ---------------------------------------------------------------
async def test_an_id_naming_no_live_worker_is_answered_here_as_not_found() -> None:
    async with cluster(MemoryBroker()) as (_, b):
        for task_id in ("999999-0123456789ab." + "A" * RANDOM_CHARS, "A" * RANDOM_CHARS, "not a task id"):
            response = await b.get(task_id)
            assert (response.status_code, response.json()) == (400, not_found(task_id))
        assert forwards(b) == (0, 0) and b.metrics.forward_failures == {}


async def test_the_tasks_of_a_dead_worker_answer_503_then_not_found() -> None:
    broker = MemoryBroker(worker_ttl=0.5, heartbeat_interval=0.1, session_ttl=1.0)
    async with cluster(broker) as (a, b):
        task_id = await a.start("slow_compute", {"seconds": 3600, "label": "x"})
        broker.kill(a.worker_id)  # as kill -9: its mailbox is gone, its liveness key not yet
        response = await b.get(task_id)
        assert response.status_code == 503 and response.headers["retry-after"] == "1"
        assert response.text == "The worker holding this session did not answer; retry later"  # the session path's 503
        assert b.metrics.forward_failures == {"owner_unreachable": 1}
        await trio.sleep(0.6)  # its liveness key expired: the task died with it
        response = await b.get(task_id)
        assert (response.status_code, response.json()) == (400, not_found(task_id))
        assert b.metrics.forwarded_out == 0


async def test_an_owner_that_dies_before_it_answers_leaves_it_to_the_worker_reached() -> None:
    broker = MemoryBroker(worker_ttl=0.5, heartbeat_interval=0.1, session_ttl=1.0)
    taken = trio.Event()
    stalled = make_server()

    @stalled.middleware
    async def stall_polls(request: Any, call_next: Any) -> Any:
        if request.method == "tasks/get" and request.headers.get("x-stall"):
            taken.set()
            await trio.sleep_forever()  # an owner that took the request and never answers: it is about to die
        return await call_next(request)

    async with cluster(broker, servers=[stalled, make_server()]) as (a, b):
        task_id = await a.start("slow_compute", {"seconds": 3600, "label": "x"})
        answers: list[httpx.Response] = []
        async with trio.open_nursery() as nursery:

            async def poll() -> None:
                answers.append(await b.get(task_id, extra={"x-stall": "1"}))

            nursery.start_soon(poll)
            await taken.wait()
            await trio.sleep(0.3)  # A acknowledged it (after 0.2 s without an answer)
            broker.kill(a.worker_id)  # as kill -9; B's heartbeat finds it dead once its liveness key expires
        (response,) = answers
        assert (response.status_code, response.json()) == (400, not_found(task_id))
        assert b.metrics.forwarded_out == 1 and b.metrics.forward_failures == {"owner_gone": 1}


async def test_a_draining_worker_answers_its_tasks_requests_503_wherever_they_arrive() -> None:
    async with cluster(MemoryBroker()) as (a, b):
        task_id = await a.start("slow_compute", {"seconds": 3600, "label": "x"})
        await a.app.extensions["trio_mcp_sse"].drain(0.1)  # SIGTERM's drain: A opens nothing more until it stops
        through_b, on_a = await b.get(task_id), await a.get(task_id)
        assert (through_b.status_code, through_b.headers["retry-after"]) == (503, "5")
        assert identical(through_b, on_a) == {"jsonrpc": "2.0", "error": {"code": -32000, "message": "Server is shutting down"}}
        store = a.host.app_lifespan.__self__.tasks  # (the app's lifespan run holds its TaskStore)
        record = store.find(task_id, "alice", "tasks/get")
        assert record.status == "working"  # its work goes on while A drains...
    assert record.status == "cancelled"  # ...and is cancelled when A stops: the task is gone with it


async def test_an_unreachable_broker_is_503_at_once() -> None:
    broker = MemoryBroker()
    async with cluster(broker) as (a, b):
        task_id = await a.start("slow_compute", {"seconds": 3600, "label": "x"})
        broker.available = False
        with trio.fail_after(1):
            response = await b.get(task_id)
        assert response.status_code == 503 and response.headers["retry-after"] == "1"
        assert response.text == "Session broker unavailable; retry later"  # the session path's 503
        assert b.metrics.forward_failures == {"broker_unavailable": 1}
        assert (await a.get(task_id)).json()["result"]["status"] == "working"  # its worker still answers it directly
        broker.available = True
        assert identical(await b.get(task_id), await a.get(task_id))["result"]["status"] == "working"
